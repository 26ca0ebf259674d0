import { expect } from 'chai';
import {
  buildPureRequest,
  copyPureRequest,
  PURE_REQUEST_DEFAULTS,
  sanitizeVision,
  type PureRequestInput,
} from '../../../daemon/agents/pure-request.js';
import { createAgentProtocol } from '../../../daemon/agents/protocol.js';

describe('agents/pure-request', () => {
  const protocol = createAgentProtocol();

  it('builds exactly vision, workingDirectory and the five options, with the documented defaults (50 iterations, web search, streaming and progress on)', () => {
    const req = buildPureRequest({
      vision: 'Create a todo app',
      workingDirectory: '/w/ses_x',
      options: {},
      maxAgents: 3,
    });
    expect(req).to.deep.equal({
      vision: 'Create a todo app',
      workingDirectory: '/w/ses_x',
      options: { maxIterations: 50, maxAgents: 3, enableWebSearch: true, enableStreaming: true, showProgress: true },
    });
    expect(PURE_REQUEST_DEFAULTS.maxIterations).to.equal(50);
    expect(protocol.isPureRequest(req)).to.equal(true);
  });

  it('drops every business field of a richer input object, at the top and inside options (allow-list, not deny-list)', () => {
    const rich = {
      vision: 'Create a todo app',
      workingDirectory: '/w/ses_x',
      userId: 'user_123',
      creditBalance: 47.5,
      subscriptionTier: 'team',
      rateLimitRemaining: 245,
      tenant: { id: 'ten_1' },
      maxAgents: 10,
      options: {
        maxIterations: 7,
        enableWebSearch: false,
        costBudget: 12,
        userEmail: 'a@b.c',
        __proto__: { polluted: true },
      },
    };
    const req = buildPureRequest(rich as unknown as PureRequestInput);
    expect(Object.keys(req)).to.deep.equal(['vision', 'workingDirectory', 'options']);
    expect(Object.keys(req.options).sort()).to.deep.equal([
      'enableStreaming',
      'enableWebSearch',
      'maxAgents',
      'maxIterations',
      'showProgress',
    ]);
    expect(req.options).to.deep.equal({
      maxIterations: 7,
      maxAgents: 10,
      enableWebSearch: false,
      enableStreaming: true,
      showProgress: true,
    });
    const json = JSON.stringify(req);
    for (const leaked of ['user_123', '47.5', 'team', '245', 'ten_1', 'costBudget', 'a@b.c', 'polluted'])
      expect(json).not.to.include(leaked);
    expect(req).not.to.equal(rich);
    expect(req.options).not.to.equal(rich.options);
  });

  it('does not let a value of the wrong type carry an object through an allowed field', () => {
    const req = buildPureRequest({
      vision: 'v',
      workingDirectory: '/w',
      options: {
        maxIterations: { userId: 'u' } as unknown as number,
        enableWebSearch: 'yes' as unknown as boolean,
        showProgress: null as unknown as boolean,
      },
      maxAgents: 2.5,
    });
    expect(req.options).to.deep.equal({
      maxIterations: 50,
      maxAgents: 1,
      enableWebSearch: true,
      enableStreaming: true,
      showProgress: true,
    });
    expect(
      buildPureRequest({ vision: 'v', workingDirectory: '/w', options: null, maxAgents: 1 }).options.maxIterations,
    ).to.equal(50);
  });

  it('copyPureRequest re-copies a structurally wider request', () => {
    const wide = {
      vision: 'v',
      workingDirectory: '/w',
      userId: 'usr_1',
      options: {
        maxIterations: 3,
        maxAgents: 2,
        enableWebSearch: false,
        enableStreaming: false,
        showProgress: false,
        tier: 'team',
      },
    };
    expect(copyPureRequest(wide)).to.deep.equal({
      vision: 'v',
      workingDirectory: '/w',
      options: { maxIterations: 3, maxAgents: 2, enableWebSearch: false, enableStreaming: false, showProgress: false },
    });
  });

  describe('sanitizeVision', () => {
    it('normalizes to NFC', () => {
      expect(sanitizeVision('Cafe\u0301')).to.equal('Caf\u00e9');
    });
    it('turns CRLF and lone CR into LF and keeps tabs and newlines', () => {
      expect(sanitizeVision('a\r\nb\rc\n\td')).to.equal('a\nb\nc\n\td');
    });
    it('strips other control characters (C0, DEL, C1) including NUL and escape sequences', () => {
      expect(sanitizeVision('a\u0000b\u0007c\u001b[31md\u007fe\u0085f\u009bg')).to.equal('abc[31mdefg');
    });
    it('trims and replaces unpaired surrogates', () => {
      expect(sanitizeVision('  \n hi \ud800 there \t\n ')).to.equal('hi \ufffd there');
      expect(sanitizeVision('emoji \ud83d\ude00')).to.equal('emoji \ud83d\ude00');
    });
  });
});
