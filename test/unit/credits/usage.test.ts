import { expect } from 'chai';
import { presentUsage, usageCsv } from '../../../daemon/credits/usage-present.js';
import { parseUsageTime } from '../../../daemon/http/routes/usage.js';
import type { Micros } from '../../../daemon/credits/money.js';

const m = (n: number) => n as Micros;
const sums = {
  charged: m(1_500_000),
  refunded: m(250_000),
  adjusted: m(-1),
  granted: m(0),
  sessions: 2,
  inputTokens: 3,
  outputTokens: 4,
  webSearches: 0,
};

describe('usage reports: presentation and parameters', () => {
  it('presents micros as decimal credits, net = charged - refunded, and the group columns by group_by', () => {
    const j = presentUsage({
      groupBy: 'user',
      since: 0,
      until: 86_400_000,
      timeZone: 'UTC',
      rows: [{ group: 'usr_1', label: 'a@example.test', ...sums }],
      totals: sums,
    });
    expect(j.rows[0]).to.deep.equal({
      user_id: 'usr_1',
      email: 'a@example.test',
      charged: 1.5,
      refunded: 0.25,
      adjusted: -0.000001,
      granted: 0,
      net: 1.25,
      sessions: 2,
      input_tokens: 3,
      output_tokens: 4,
      web_searches: 0,
    });
    expect(j).to.include({ since: '1970-01-01T00:00:00.000Z', until: '1970-01-02T00:00:00.000Z', group_by: 'user' });
  });

  it('writes CSV with a header, RFC 4180 quoting, empty cells for null, and defuses formulas', () => {
    const csv = usageCsv({
      group_by: 'key',
      rows: [
        {
          api_key_id: 'key_1',
          api_key_name: 'ci, "nightly"',
          charged: 1.5,
          refunded: 0,
          adjusted: 0,
          granted: 0,
          net: 1.5,
          sessions: 1,
          input_tokens: 2,
          output_tokens: 3,
          web_searches: 0,
        },
        {
          api_key_id: 'key_2',
          api_key_name: '=HYPERLINK("x")',
          charged: 1,
          refunded: 0,
          adjusted: 0,
          granted: 0,
          net: 1,
          sessions: 1,
          input_tokens: 0,
          output_tokens: 0,
          web_searches: 0,
        },
        {
          api_key_id: null,
          api_key_name: null,
          charged: 0,
          refunded: 0,
          adjusted: -0.5,
          granted: 10,
          net: 0,
          sessions: 0,
          input_tokens: 0,
          output_tokens: 0,
          web_searches: 0,
        },
      ],
    });
    expect(csv.split('\n')).to.deep.equal([
      'api_key_id,api_key_name,charged,refunded,adjusted,granted,net,sessions,input_tokens,output_tokens,web_searches',
      'key_1,"ci, ""nightly""",1.5,0,0,0,1.5,1,2,3,0',
      `key_2,"'=HYPERLINK(""x"")",1,0,0,0,1,1,0,0,0`,
      ',,0,0,-0.5,10,0,0,0,0,0',
      '',
    ]);
  });

  it('reads since/until as an age, a date in the zone, or an ISO date-time; refuses anything else', () => {
    const now = Date.parse('2026-12-03T12:00:00Z');
    expect(parseUsageTime('30d', 'since', now, 'UTC')).to.equal(now - 30 * 86_400_000);
    expect(parseUsageTime('24h', 'since', now, 'UTC')).to.equal(now - 86_400_000);
    expect(parseUsageTime('2026-11-01', 'since', now, 'UTC')).to.equal(Date.parse('2026-11-01T00:00:00Z'));
    expect(parseUsageTime('2026-11-01', 'since', now, 'Europe/Berlin')).to.equal(Date.parse('2026-10-31T23:00:00Z'));
    expect(parseUsageTime('2026-11-01T09:30:00+02:00', 'until', now, 'UTC')).to.equal(
      Date.parse('2026-11-01T07:30:00Z'),
    );
    expect(parseUsageTime('2026-11-01T09:30', 'until', now, 'Europe/Berlin')).to.equal(
      Date.parse('2026-11-01T08:30:00Z'),
    );
    for (const bad of [
      'yesterday',
      '30',
      '30x',
      '-1d',
      '2026-13-01',
      '2026-02-30',
      '1700000000000',
      '2026-11-01 09:30',
    ]) {
      expect(() => parseUsageTime(bad, 'since', now, 'UTC'), bad).to.throw(/since must be/);
    }
  });
});
