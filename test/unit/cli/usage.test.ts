import { expect } from 'chai';
import { DEFAULT_BAR_WIDTH, bar, usageTable } from '../../../cli/commands/usage.js';
import type { UsageJson } from '../../../daemon/credits/usage-present.js';

const figures = (charged: number) => ({
  charged,
  refunded: 0,
  adjusted: 0,
  granted: 0,
  net: charged,
  sessions: 1,
  input_tokens: 10,
  output_tokens: 5,
  web_searches: 0,
});

describe('keen-admin usage: bars and table', () => {
  it('scales a bar to the largest value, in eighths of a block; anything above 0 shows', () => {
    expect(bar(10, 10, 4)).to.equal('████');
    expect(bar(5, 10, 4)).to.equal('██');
    expect(bar(1, 16, 2)).to.equal('▏');
    expect(bar(0.0001, 10, 30)).to.equal('▏');
    expect(bar(0, 10, 30)).to.equal('');
    expect(bar(3, 0, 30)).to.equal('');
    expect(bar(-1, 10, 30)).to.equal('');
  });

  it('prints a row per group with a bar of 30 characters for the largest when not on a terminal, and a TOTAL line', () => {
    const report: UsageJson = {
      success: true,
      group_by: 'day',
      since: '2026-11-01T00:00:00.000Z',
      until: '2026-11-04T00:00:00.000Z',
      time_zone: 'UTC',
      rows: [
        { day: '2026-11-01', ...figures(2) },
        { day: '2026-11-02', ...figures(4) },
      ],
      totals: figures(6),
    };
    const lines = usageTable(report, undefined).trimEnd().split('\n');
    expect(lines[0]).to.match(
      /^DAY\s+CHARGED\s+REFUNDED\s+ADJUSTED\s+GRANTED\s+NET\s+SESSIONS\s+INPUT_TOKENS\s+OUTPUT_TOKENS\s+CHARGED_BAR$/,
    );
    expect(lines[1])
      .to.match(/^2026-11-01\s+2\s/)
      .and.match(/█{15}$/);
    expect(lines[2])
      .to.match(/^2026-11-02\s+4\s/)
      .and.match(new RegExp(`\\s█{${DEFAULT_BAR_WIDTH}}$`));
    expect(lines[3])
      .to.match(/^TOTAL\s+6\s/)
      .and.not.include('█');
    // On a wide terminal the bar takes the room left, within bounds.
    const wide = usageTable(report, 200).split('\n')[2]!;
    expect(wide.length).to.be.at.most(200);
    expect((wide.match(/█/g) ?? []).length).to.be.greaterThan(DEFAULT_BAR_WIDTH);
  });
});
