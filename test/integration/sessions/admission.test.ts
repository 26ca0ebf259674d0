import { expect } from 'chai';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildUser } from '../../helpers/factories.js';
import { execute, expectLedgerClean, grant, waitForEnd } from '../../helpers/sessions.js';

describeStorage('execute admission: credits, concurrency, validation, idempotency', (backend) => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon({ backend });
  });
  after(async () => d?.stop());

  async function sessionsOf(userId: string) {
    return d.container.database.db.selectFrom('sessions').selectAll().where('user_id', '=', userId).execute();
  }

  it('two users racing: balance for exactly N runs, 4N concurrent executes, exactly N sessions and the rest 402', async () => {
    const N = 3;
    const users = [await buildUser(d, { tier: 'enterprise' }), await buildUser(d, { tier: 'enterprise' })];
    for (const u of users) await grant(d, u, N);
    const results = await Promise.all(
      users.flatMap((u) =>
        Array.from({ length: 4 * N }, () =>
          execute(d, u, 'Race for the last credit [slow:1000] [iterations:2]', { costBudget: 1 }),
        ),
      ),
    );
    for (const u of users) {
      const mine = results.filter((r, i) => Math.floor(i / (4 * N)) === users.indexOf(u));
      expect(mine.filter((r) => r.status === 200)).to.have.length(N);
      const refused = mine.filter((r) => r.status !== 200);
      expect(refused).to.have.length(3 * N);
      for (const r of refused) {
        expect(r.status).to.equal(402);
        expect(r.body.error.code).to.equal('INSUFFICIENT_CREDITS');
        const det = r.body.error.details;
        expect(det.required).to.equal(1);
        expect(det.available).to.be.at.least(0).and.below(1);
        expect(det.shortfall).to.be.closeTo(1 - det.available, 1e-6);
      }
      expect(await sessionsOf(u.user.id)).to.have.length(N);
    }
    for (const r of results.filter((x) => x.status === 200)) await d.container.supervisor.settled(r.body.session.id);
    await expectLedgerClean(d);
  });

  it('N+5 concurrent executes for a tier allowing N sessions: exactly N run, the rest 429 CONCURRENCY_LIMIT', async () => {
    const u = await buildUser(d, { tier: 'individual' }); // 2 concurrent sessions
    await grant(d, u, 100);
    const results = await Promise.all(
      Array.from({ length: 7 }, () =>
        execute(d, u, 'Hold a slot for a while [slow:300] [iterations:4]', { costBudget: 1 }),
      ),
    );
    const ok = results.filter((r) => r.status === 200);
    expect(ok).to.have.length(2);
    for (const r of results.filter((x) => x.status !== 200)) {
      expect(r.status).to.equal(429);
      expect(r.body.error.code).to.equal('CONCURRENCY_LIMIT');
      expect(r.body.error.details).to.include({ limit: 'concurrent_sessions', current: 2, max: 2 });
      expect(r.headers.get('retry-after')).to.equal('5');
    }
    expect((await d.container.ledger.balance(u.user.id)).reserved).to.equal(2_000_000);
    // A slot is freed exactly when its session ends.
    for (const r of ok) await waitForEnd(d, u, r.body.session.id);
    expect((await execute(d, u, 'Now there is room again', { costBudget: 1 })).status).to.equal(200);
    await d.container.supervisor.settled((await sessionsOf(u.user.id)).find((s) => s.status === 'running')?.id ?? '');
    await expectLedgerClean(d);
  });

  it('refuses each bound of the execute request schema (vision length and characters, maxIterations 1-200, costBudget 0.1-1000 with at most 6 decimals), wrong types and unknown fields, writing nothing', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 100);
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ vision: 'too short' }, 'vision'],
      [{ vision: 'x'.repeat(32_001) }, 'vision'],
      [{ vision: 42 }, 'vision'],
      [{}, 'vision'],
      [{ vision: '\u0001\u0002\u0003\u0004\u0005\u0006\u0007\u0008\u000b\u000c\u000e' }, 'vision'],
      [{ vision: 'a valid vision here', options: { maxIterations: 0 } }, 'options.maxIterations'],
      [{ vision: 'a valid vision here', options: { maxIterations: 201 } }, 'options.maxIterations'],
      [{ vision: 'a valid vision here', options: { maxIterations: 2.5 } }, 'options.maxIterations'],
      [{ vision: 'a valid vision here', options: { costBudget: 0.09 } }, 'options.costBudget'],
      [{ vision: 'a valid vision here', options: { costBudget: 1000.5 } }, 'options.costBudget'],
      [{ vision: 'a valid vision here', options: { costBudget: 1.1234567 } }, 'options.costBudget'],
      [{ vision: 'a valid vision here', options: { enableWebSearch: 'yes' } }, 'options.enableWebSearch'],
      [{ vision: 'a valid vision here', options: { userId: 'usr_x' } }, 'options.userId'],
      [{ vision: 'a valid vision here', creditBalance: 100 }, 'creditBalance'],
      [{ vision: 'a valid vision here', options: [] }, 'options'],
    ];
    for (const [body, field] of bad) {
      const r = await d.api.post('/v1/agents/execute', body, { token: u.token });
      expect(r.status, JSON.stringify(body).slice(0, 80)).to.equal(400);
      expect(r.body.error.type).to.equal('VALIDATION_ERROR');
      expect(
        r.body.error.details.map((x: { field: string }) => x.field),
        JSON.stringify(body).slice(0, 80),
      ).to.include(field);
    }
    expect(await sessionsOf(u.user.id)).to.have.length(0);
    expect((await d.container.ledger.balance(u.user.id)).reserved).to.equal(0);
  });

  it('honors Idempotency-Key: the same request is the same session and one charge; another body is 409', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 10);
    const body = { vision: 'Exactly once, please', options: { costBudget: 1 } };
    const key = `idem-${Date.now()}`;
    const first = await d.api.post('/v1/agents/execute', body, { token: u.token, headers: { 'Idempotency-Key': key } });
    expect(first.status, first.text).to.equal(200);
    const again = await d.api.post('/v1/agents/execute', body, { token: u.token, headers: { 'Idempotency-Key': key } });
    expect(again.status).to.equal(200);
    expect(again.body).to.deep.equal(first.body);
    expect(again.headers.get('idempotent-replayed')).to.equal('true');
    const other = await d.api.post(
      '/v1/agents/execute',
      { ...body, vision: 'Something else entirely' },
      { token: u.token, headers: { 'Idempotency-Key': key } },
    );
    expect(other.status).to.equal(409);
    expect(other.body.error.code).to.equal('IDEMPOTENCY_KEY_REUSED');
    expect(await sessionsOf(u.user.id)).to.have.length(1);
    // Another user's identical key is theirs alone.
    const v = await buildUser(d, { tier: 'team' });
    await grant(d, v, 2);
    expect(
      (await d.api.post('/v1/agents/execute', body, { token: v.token, headers: { 'Idempotency-Key': key } })).body
        .session.id,
    ).not.to.equal(first.body.session.id);
    await waitForEnd(d, u, first.body.session.id);
    await expectLedgerClean(d);
  });

  it('needs the agents:execute scope', async () => {
    const u = await buildUser(d);
    const key = (await d.api.post('/v1/api-keys', { name: 'read only', scopes: ['sessions:read'] }, { token: u.token }))
      .body.key;
    const r = await d.api.post('/v1/agents/execute', { vision: 'Not allowed to run this' }, { apiKey: key });
    expect(r.status).to.equal(403);
    expect(r.body.error.code).to.equal('INSUFFICIENT_SCOPE');
  });
});
