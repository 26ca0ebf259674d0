import { expect } from 'chai';
import type { TestDaemon } from './daemon.js';
import type { TestUser } from './factories.js';

const FINAL = new Set(['completed', 'failed', 'cancelled', 'budget_exhausted', 'timed_out', 'interrupted']);

/** Polls a session until it reaches a final status (bounded), and returns it. */
export async function waitForEnd(
  d: { api: TestDaemon['api'] },
  token: { token?: string; apiKey?: string },
  sessionId: string,
  timeoutMs = 20_000,
) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await d.api.get(`/v1/sessions/${sessionId}`, token);
    if (r.status === 200 && FINAL.has(r.body.session.status)) return r.body.session;
    if (Date.now() > until) throw new Error(`session ${sessionId} did not end in time: ${r.text}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** Grants credits through the daemon's ledger. */
export async function grant(d: TestDaemon, u: TestUser, credits: number): Promise<void> {
  await d.container.ledger.grant({
    userId: u.user.id,
    amount: Math.round(credits * 1_000_000) as never,
    reason: 'test',
    actor: { type: 'system', id: null },
  });
}

/** Asserts the ledger invariants hold and verify() finds nothing. */
export async function expectLedgerClean(d: TestDaemon): Promise<void> {
  expect(await d.container.ledger.verify()).to.deep.equal([]);
}

export async function execute(
  d: TestDaemon,
  u: { token: string },
  vision: string,
  options: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
) {
  return d.api.post(
    '/v1/agents/execute',
    { vision, ...(Object.keys(options).length ? { options } : {}), ...extra },
    { token: u.token },
  );
}
