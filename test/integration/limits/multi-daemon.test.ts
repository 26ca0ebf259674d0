import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { describeShared, describeStorage } from '../../helpers/backends.js';
import { spawnDaemon, type ChildDaemon, type DaemonOptions } from '../../helpers/daemon.js';
import { TEST_POSTGRES_URL, TEST_REDIS_URL } from '../../helpers/env.js';
import { createTestSchema, type TestSchema } from '../../helpers/postgres.js';
import {
  bootstrapAdmin,
  deleteKeys,
  hasRateLimitHeaders,
  ready,
  suitePrefix,
  testRedis,
  userWithKey,
} from './support.js';

const TITLE = 'limits across two daemon processes on one Redis and one Postgres';

/**
 * Two `keen-gateway start` processes (the built dist/), one Redis key prefix,
 * one Postgres schema, one JWT secret: what a deployment with two replicas is.
 */
if (!TEST_REDIS_URL || !TEST_POSTGRES_URL) {
  // Report the missing backend(s) the usual way (a failure under CI=true).
  if (!TEST_REDIS_URL) describeShared(TITLE, () => undefined);
  if (!TEST_POSTGRES_URL) describeStorage(TITLE, () => undefined);
} else {
  describe(`${TITLE} [redis+postgres]`, function () {
    this.timeout(60_000);
    const prefix = suitePrefix('multi');
    let schema: TestSchema;
    let a: ChildDaemon;
    let b: ChildDaemon;
    let adminKey: string;
    let redis: Redis;

    before(async function () {
      this.timeout(120_000);
      schema = await createTestSchema();
      // keen-admin init's work, on the shared database, before either daemon starts.
      adminKey = await bootstrapAdmin(schema.url);
      const options: DaemonOptions = {
        shared: 'redis',
        databaseUrl: schema.url,
        jwtSecret: randomBytes(32).toString('base64url'),
        config: { redis: { key_prefix: prefix }, tiers: { individual: { requests_per_hour: 100 } } },
      };
      [a, b] = await Promise.all([spawnDaemon(options), spawnDaemon(options)]);
      redis = testRedis();
      await ready(redis);
    });

    after(async function () {
      this.timeout(30_000);
      await Promise.all([a?.cleanup(), b?.cleanup()]);
      if (redis) {
        await deleteKeys(redis, prefix);
        redis.disconnect();
      }
      await schema?.drop();
    });

    it('300 concurrent requests of one user split over both daemons: exactly 100 allowed, 200 get 429 with Retry-After and the headers', async () => {
      const u = await userWithKey(a.api, adminKey, { tier: 'individual' });
      const sent = Array.from({ length: 300 }, (_, i) => ({
        daemon: i % 2 === 0 ? 'a' : 'b',
        p: (i % 2 === 0 ? a : b).api.get('/v1/me', { apiKey: u.key }),
      }));
      const rs = await Promise.all(sent.map(async (s) => ({ daemon: s.daemon, r: await s.p })));
      const ok = rs.filter((x) => x.r.status === 200);
      const denied = rs.filter((x) => x.r.status === 429);
      expect(ok, 'allowed').to.have.length(100);
      expect(denied, 'denied').to.have.length(200);

      // Each allowed request saw its own count: remaining 99, 98, ..., 0, each exactly once.
      const remaining = ok.map((x) => Number(x.r.headers.get('x-ratelimit-remaining'))).sort((p, q) => p - q);
      expect(remaining).to.deep.equal(Array.from({ length: 100 }, (_, i) => i));
      for (const { r } of ok) {
        expect(hasRateLimitHeaders(r), 'headers on a 200').to.equal(true);
        expect(r.headers.get('x-ratelimit-limit')).to.equal('100');
        expect(r.headers.get('ratelimit-policy'))
          .to.include('"user";q=100;w=3600')
          .and.include('"api_key";q=1000;w=3600');
      }
      for (const { r } of denied) {
        expect(r.body.error).to.include({ type: 'RATE_LIMIT_ERROR', code: 'RATE_LIMITED' });
        expect(r.body.error.details).to.include({ limit: 'user', max: 100, current: 100 });
        expect(Number(r.headers.get('retry-after'))).to.be.within(1, 3660);
        expect(hasRateLimitHeaders(r), 'headers on a 429').to.equal(true);
        expect(r.headers.get('x-ratelimit-remaining')).to.equal('0');
        expect(r.headers.get('ratelimit')).to.match(/^"user";r=0;t=\d+$/);
      }
      // Both daemons answered both ways or, at the least, both now deny: the budget is one.
      expect((await a.api.get('/v1/me', { apiKey: u.key })).status).to.equal(429);
      expect((await b.api.get('/v1/me', { apiKey: u.key })).status).to.equal(429);
    });

    it('another user on the same daemons keeps a full budget of its own', async () => {
      const v = await userWithKey(b.api, adminKey, { tier: 'individual' });
      const r = await a.api.get('/v1/me', { apiKey: v.key });
      expect(r.status).to.equal(200);
      expect(r.headers.get('x-ratelimit-remaining')).to.equal('99');
    });

    it('login throttle: 5 failures spread over both daemons, then the 6th attempt on either is 429 LOGIN_THROTTLED', async () => {
      const password = `pw-${randomBytes(12).toString('hex')}`;
      const u = await userWithKey(a.api, adminKey, { password });
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) {
        const r = await (i % 2 === 0 ? a : b).api.post('/v1/auth/login', {
          email: u.email,
          password: `wrong-${i}-${password}`,
        });
        expect(r.body.error?.code, r.text).to.equal('INVALID_CREDENTIALS');
        statuses.push(r.status);
      }
      expect(statuses).to.deep.equal([401, 401, 401, 401, 401]);
      for (const d of [b, a]) {
        // Even the right password: the email is throttled whichever daemon is asked.
        const r = await d.api.post('/v1/auth/login', { email: u.email, password });
        expect(r.status, r.text).to.equal(429);
        expect(r.body.error).to.include({ type: 'RATE_LIMIT_ERROR', code: 'LOGIN_THROTTLED' });
        expect(Number(r.headers.get('retry-after'))).to.be.at.least(1);
      }
      // Throttling is per email: another account signs in from the same address on either daemon.
      const otherPassword = `pw-${randomBytes(12).toString('hex')}`;
      const other = await userWithKey(b.api, adminKey, { password: otherPassword });
      const ok = await b.api.post('/v1/auth/login', { email: other.email, password: otherPassword });
      expect(ok.status, ok.text).to.equal(200);
    });
  });
}
