import { expect } from 'chai';
import { createAgentProtocol } from '../../../daemon/agents/protocol.js';

describe('agents/protocol (schemas/agent-protocol.schema.json)', () => {
  const { parseEventLine, isPureRequest } = createAgentProtocol();

  it('accepts each event shape of docs/agent-protocol.md', () => {
    const lines = [
      { type: 'phase', phase: 'EXPLORE' },
      { type: 'progress', message: 'half way', percent: 40 },
      { type: 'progress', message: 'no percent' },
      { type: 'log', level: 'warn', message: 'careful' },
      { type: 'usage', input_tokens: 10, output_tokens: 0, web_searches: 2 },
      { type: 'result', status: 'completed', summary: 'done' },
      { type: 'result', status: 'failed', summary: '' },
    ];
    for (const l of lines) expect(parseEventLine(JSON.stringify(l)), JSON.stringify(l)).to.deep.equal(l);
  });

  it('refuses anything else', () => {
    const bad: unknown[] = [
      'not json',
      '',
      '[]',
      'null',
      '42',
      { type: 'phase' },
      { type: 'phase', phase: '' },
      { type: 'phase', phase: 'X'.repeat(65) },
      { type: 'phase', phase: 'X', userId: 'u' },
      { type: 'progress', message: 'm', percent: 101 },
      { type: 'progress', message: 'm', percent: -1 },
      { type: 'log', level: 'fatal', message: 'm' },
      { type: 'usage', input_tokens: -1, output_tokens: 0, web_searches: 0 },
      { type: 'usage', input_tokens: 1.5, output_tokens: 0, web_searches: 0 },
      { type: 'usage', input_tokens: '10', output_tokens: 0, web_searches: 0 },
      { type: 'usage', input_tokens: 1e300, output_tokens: 0, web_searches: 0 },
      { type: 'usage', input_tokens: 1, output_tokens: 1 },
      { type: 'result', status: 'budget_exhausted', summary: 's' },
      { type: 'result', status: 'completed', summary: 's'.repeat(16385) },
      { type: 'cost', amount: 1 },
    ];
    for (const b of bad) {
      const line = typeof b === 'string' ? b : JSON.stringify(b);
      expect(parseEventLine(line), line.slice(0, 80)).to.equal(null);
    }
    expect(parseEventLine('{"type":"phase","phase":"X","__proto__":{"admin":true}}')).to.equal(null);
  });

  it('validates the stdin request strictly', () => {
    const ok = {
      vision: 'v',
      workingDirectory: '/w',
      options: { maxIterations: 1, maxAgents: 1, enableWebSearch: true, enableStreaming: false, showProgress: true },
    };
    expect(isPureRequest(ok)).to.equal(true);
    expect(isPureRequest({ ...ok, userId: 'u' })).to.equal(false);
    expect(isPureRequest({ ...ok, options: { ...ok.options, costBudget: 3 } })).to.equal(false);
    expect(isPureRequest({ ...ok, options: { ...ok.options, maxIterations: 201 } })).to.equal(false);
  });
});
