import { expect } from 'chai';
import { exitCodeForStatus, formatEnd, formatEvent } from '../../../cli/commands/sessions.js';
import { colorEnabled, escapeText, paint } from '../../../cli/core/output.js';
import type { Session } from '../../../sdk/src/index.js';

const ESC = '\u001b';
const ev = (type: string, data: Record<string, unknown>, seq = 1) => ({
  type,
  session_id: 'ses_x',
  seq,
  ts: '2026-12-03T12:34:56.789Z',
  data,
});

describe('keen-admin sessions watch and logs: lines, colour, exit codes', () => {
  it('prints time, seq, type and a short summary for each event type', () => {
    expect(formatEvent(ev('agent.phase', { phase: 'PLAN' }, 2))).to.match(
      /^12:34:56 {2}#2 {4}agent\.phase +phase PLAN\n$/,
    );
    expect(formatEvent(ev('agent.progress', { message: 'wrote PLAN.md', percent: 40 }))).to.include(
      'wrote PLAN.md (40%)',
    );
    expect(formatEvent(ev('agent.log', { level: 'warn', message: 'careful' }))).to.include('warn  careful');
    expect(formatEvent(ev('cost.update', { cost_so_far: 0.25, reserved: 2 }))).to.include(
      'cost so far 0.25 of 2 reserved',
    );
    expect(formatEvent(ev('session.status', { status: 'completed', final_cost: 0.5 }))).to.include(
      'completed final cost 0.5',
    );
    expect(formatEvent(ev('something.new', { a: 1 }))).to.include('{"a":1}');
  });

  it('escapes control characters, separators and bidi overrides in agent text: hostile output cannot drive the terminal', () => {
    const hostile = `done${ESC}[2J${ESC}]0;pwned\u0007\r\nFAKE 12:00:00 #9 session.status completed\u202egnp.exe\u009b31m`;
    for (const e of [
      ev('agent.log', { level: 'info', message: hostile }),
      ev('agent.progress', { message: hostile }),
      ev('agent.phase', { phase: hostile }),
      ev('session.status', { status: 'failed', reason: hostile, summary: hostile }),
    ]) {
      const out = formatEvent(e);
      expect(out, e.type).not.to.match(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e]/);
      expect(out).to.include('\\u001b[2J').and.include('\\u202e');
    }
    // A failed session's multi-line summary (agent stderr) stays on indented lines, each escaped; never a line that looks like an event.
    const failed = formatEvent(
      ev('session.status', {
        status: 'failed',
        reason: 'agent_exit_3',
        summary: 'crashed\nagent stderr (last lines):\nboom',
      }),
    ).split('\n');
    expect(failed.slice(1, 4)).to.deep.equal(['    crashed', '    agent stderr (last lines):', '    boom']);
    expect(formatEvent(ev('agent.log', { level: 'info', message: 'a\nb' })).split('\n')).to.have.length(2);
    expect(escapeText('a\u2028b')).to.equal('a\\u2028b');
  });

  it('colours status words and event types only when asked, and never inside the escaped text', () => {
    const plain = formatEvent(ev('session.status', { status: 'failed' }));
    expect(plain).not.to.include(ESC);
    const coloured = formatEvent(ev('session.status', { status: 'failed' }), true);
    expect(coloured).to.include(`${ESC}[31mfailed${ESC}[0m`).and.include(`${ESC}[1msession.status`);
    expect(formatEvent(ev('session.status', { status: 'completed' }), true)).to.include(`${ESC}[32mcompleted${ESC}[0m`);
    expect(paint(false, 'red', 'x')).to.equal('x');
    // Agent text that carries its own escape stays escaped when colour is on.
    expect(formatEvent(ev('agent.log', { level: 'error', message: `${ESC}[0m` }), true)).to.include('\\u001b[0m');
  });

  it('colour needs a TTY, no NO_COLOR (any non-empty value) and no --no-color', () => {
    const tty = { isTTY: true };
    expect(colorEnabled({ stream: tty, env: {} })).to.equal(true);
    expect(colorEnabled({ stream: tty, env: { NO_COLOR: '' } })).to.equal(true);
    expect(colorEnabled({ stream: tty, env: { NO_COLOR: '1' } })).to.equal(false);
    expect(colorEnabled({ stream: tty, env: { NO_COLOR: '0' } })).to.equal(false);
    expect(colorEnabled({ stream: tty, env: {}, color: false })).to.equal(false);
    expect(colorEnabled({ stream: { isTTY: false }, env: {} })).to.equal(false);
    expect(colorEnabled({ stream: {}, env: {} })).to.equal(false);
  });

  it('exits 0 only for a completed session; the closing line has the final status, cost and usage', () => {
    expect(exitCodeForStatus('completed')).to.equal(0);
    for (const s of ['failed', 'cancelled', 'timed_out', 'interrupted', 'budget_exhausted'])
      expect(exitCodeForStatus(s), s).to.equal(1);
    const session = {
      id: 'ses_x',
      status: 'budget_exhausted',
      end_reason: 'budget',
      final_cost: 2,
      cost_so_far: 2,
      credit_reserved: 2,
      usage: { input_tokens: 10, output_tokens: 5, web_searches: 1 },
    } as unknown as Session;
    expect(formatEnd(session)).to.equal(
      'ses_x budget_exhausted (budget): final cost 2 credits of 2 reserved; 10 input and 5 output tokens, 1 web searches\n',
    );
  });
});
