import { expect } from 'chai';
import { describeShared } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { TEST_REDIS_URL } from '../../helpers/env.js';
import { buildUser, type TestUser } from '../../helpers/factories.js';
import { eventually, hasRateLimitHeaders, metricValue, TcpProxy } from './support.js';

const TITLE = 'Redis stopped mid-test, over HTTP';
const LIMIT = 5;

if (!TEST_REDIS_URL) describeShared(TITLE, () => undefined);
else
  describe(`${TITLE} [redis]`, function () {
    this.timeout(60_000);
    const target = new URL(TEST_REDIS_URL!);
    const proxy = new TcpProxy(target.hostname, Number(target.port || 6379));
    let d: TestDaemon;
    let u: TestUser;

    before(async () => {
      const port = await proxy.start();
      d = await startDaemon({
        shared: 'redis',
        config: { redis: { url: `redis://127.0.0.1:${port}` }, tiers: { individual: { requests_per_hour: LIMIT } } },
      });
      u = await buildUser(d, { tier: 'individual' });
    });
    after(async () => {
      await d?.stop();
      await proxy.stop();
    });

    const failures = async () => {
      const text = (await d.api.get('/metrics')).text;
      return {
        open: metricValue(text, 'keen_ratelimit_backend_failures_total', { mode: 'fail_open' }),
        closed: metricValue(text, 'keen_ratelimit_backend_failures_total', { mode: 'fail_closed' }),
        degraded: metricValue(text, 'keen_ratelimit_decisions_total', { policy: 'user', outcome: 'degraded' }),
      };
    };

    it('reads fail open, writes fail closed with 503 + Retry-After, readiness names redis, metrics count each decision; recovery needs no restart', async () => {
      // Up: one request of the budget spent, through Redis.
      const first = await d.api.get('/v1/me', { token: u.token });
      expect(first.status).to.equal(200);
      expect(first.headers.get('x-ratelimit-remaining')).to.equal(String(LIMIT - 1));
      expect((await d.api.get('/health/ready')).status).to.equal(200);
      const before = await failures();
      expect(before).to.deep.equal({ open: 0, closed: 0, degraded: 0 });

      // Down.
      await proxy.stop();
      await eventually(async () => (await d.api.get('/health/ready')).status === 503);
      const ready = await d.api.get('/health/ready');
      expect(ready.status).to.equal(503);
      expect(ready.body.error).to.include({ type: 'SYSTEM_ERROR', code: 'UNAVAILABLE' });
      expect(ready.body.error.message).to.include('redis');
      expect(ready.body.error.details.checks).to.deep.equal({ database: 'ok', redis: 'fail', disk: 'ok' });

      // Reads go through (more of them than the budget, since nothing can be counted)...
      for (let i = 0; i < LIMIT + 2; i++) {
        const r = await d.api.get('/v1/me', { token: u.token });
        expect(r.status, r.text).to.equal(200);
        expect(r.body.user.id).to.equal(u.user.id);
      }
      // ...writes do not: an authenticated POST and an anonymous one (login).
      const writes = [
        await d.api.post('/v1/api-keys', { name: 'during outage' }, { token: u.token }),
        await d.api.post('/v1/api-keys', { name: 'during outage' }, { token: u.token }),
        await d.api.post('/v1/auth/login', { email: u.email, password: 'whatever-password' }),
      ];
      for (const r of writes) {
        expect(r.status, r.text).to.equal(503);
        expect(r.body.error).to.include({ type: 'SYSTEM_ERROR', code: 'UNAVAILABLE' });
        expect(r.headers.get('retry-after')).to.equal('1');
      }
      const during = await failures();
      expect(during).to.deep.equal({ open: LIMIT + 2, closed: 3, degraded: LIMIT + 2 });

      // Back on the same port: the same client reconnects by itself.
      await proxy.start();
      await eventually(async () => (await d.api.get('/health/ready')).status === 200);
      const statuses: number[] = [];
      let last;
      for (let i = 0; i < LIMIT; i++) {
        last = await d.api.get('/v1/me', { token: u.token });
        statuses.push(last.status);
      }
      // The budget picks up where Redis left it: 1 spent before the outage, none during it.
      expect(statuses).to.deep.equal([...Array(LIMIT - 1).fill(200), 429]);
      expect(last!.body.error).to.include({ code: 'RATE_LIMITED' });
      expect(Number(last!.headers.get('retry-after'))).to.be.at.least(1);
      expect(hasRateLimitHeaders(last!)).to.equal(true);
      const created = await d.api.post('/v1/api-keys', { name: 'after outage' }, { token: u.token });
      expect(created.status, 'writes are limited again, not refused as unavailable').to.equal(429);
      expect(await failures()).to.deep.equal(during);
    });
  });
