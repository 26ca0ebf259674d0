import { expect } from 'chai';
import { describeShared } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildUser } from '../../helpers/factories.js';
import { execute, grant } from '../../helpers/sessions.js';

describeShared('a concurrency denial does not spend request quota', (shared) => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon({
      shared,
      config: { tiers: { individual: { requests_per_hour: 50, max_concurrent_sessions: 1 } } },
    });
  });
  after(async () => d?.stop());

  it('refunds the request unit of an execute refused with CONCURRENCY_LIMIT', async () => {
    const u = await buildUser(d, { tier: 'individual' });
    await grant(d, u, 10);
    const first = await execute(d, u, 'Hold the only slot [slow:300] [iterations:20]', { costBudget: 1 });
    expect(first.status, first.text).to.equal(200);
    const before = Number(first.headers.get('x-ratelimit-remaining'));
    for (let i = 0; i < 5; i++) {
      const denied = await execute(d, u, 'No slot left for this one', { costBudget: 1 });
      expect(denied.status).to.equal(429);
      expect(denied.body.error.code).to.equal('CONCURRENCY_LIMIT');
    }
    const me = await d.api.get('/v1/me', { token: u.token });
    // Only the first execute and this request were counted.
    expect(Number(me.headers.get('x-ratelimit-remaining'))).to.equal(before - 1);
    await d.api.post(`/v1/sessions/${first.body.session.id}/cancel`, {}, { token: u.token });
  });
});
