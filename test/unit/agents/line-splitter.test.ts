import { expect } from 'chai';
import { LineSplitter } from '../../../daemon/agents/line-splitter.js';

function split(chunks: Buffer[], max = 16): { lines: string[]; overflows: string[] } {
  const lines: string[] = [];
  const overflows: string[] = [];
  const s = new LineSplitter(
    max,
    (l) => lines.push(l),
    (p) => overflows.push(p),
  );
  for (const c of chunks) s.push(c);
  s.end();
  return { lines, overflows };
}

describe('agents/line-splitter', () => {
  it('splits on newlines across chunks and keeps a last line without newline', () => {
    expect(split([Buffer.from('ab\ncd'), Buffer.from('e\r\n\nfg')]).lines).to.deep.equal(['ab', 'cde', '', 'fg']);
  });

  it('keeps a multi-byte character split across chunks', () => {
    const bytes = Buffer.from('h\u00e9llo\n');
    expect(split([bytes.subarray(0, 2), bytes.subarray(2)]).lines).to.deep.equal(['h\u00e9llo']);
  });

  it('drops a line longer than the bound, reports it once, and resumes at the next line', () => {
    const { lines, overflows } = split(
      [Buffer.from('short\n' + 'x'.repeat(10)), Buffer.from('y'.repeat(10)), Buffer.from('z'.repeat(30) + '\nok\n')],
      16,
    );
    expect(lines).to.deep.equal(['short', 'ok']);
    expect(overflows).to.have.length(1);
    expect(overflows[0]).to.match(/^x+y+/);
  });

  it('drops an unterminated overlong last line', () => {
    const { lines, overflows } = split([Buffer.from('a\n' + 'b'.repeat(40))], 16);
    expect(lines).to.deep.equal(['a']);
    expect(overflows).to.have.length(1);
  });
});
