import { expect } from 'chai';
import { describeShared } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildApiKey, buildUser } from '../../helpers/factories.js';

describeShared('request rate limits over HTTP', (shared) => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon({ shared, config: { limits: { ip_requests_per_hour: 30 } } });
  });
  after(async () => d?.stop());

  it('the documented 1000 requests per hour of an individual user: of 1001 rapid requests, the one past 1000 gets 429 with the headers', async () => {
    const u = await buildUser(d, { tier: 'individual' });
    const statuses: number[] = [];
    const batch = 50;
    for (let i = 0; i < 1001; i += batch) {
      const n = Math.min(batch, 1001 - i);
      const rs = await Promise.all(Array.from({ length: n }, () => d.api.get('/v1/me', { token: u.token })));
      statuses.push(...rs.map((r) => r.status));
    }
    expect(statuses.filter((s) => s === 200)).to.have.length(1000);
    expect(statuses.filter((s) => s === 429)).to.have.length(1);
    const denied = await d.api.get('/v1/me', { token: u.token });
    expect(denied.status).to.equal(429);
    expect(denied.body.error).to.include({ type: 'RATE_LIMIT_ERROR', code: 'RATE_LIMITED' });
    expect(denied.body.error.details).to.include({ limit: 'user', max: 1000 });
    expect(Number(denied.headers.get('retry-after'))).to.be.at.least(1);
  });

  it('puts RateLimit-Policy, RateLimit and X-RateLimit-* on authenticated responses', async () => {
    const u = await buildUser(d, { tier: 'team' });
    const r = await d.api.get('/v1/me', { token: u.token });
    expect(r.headers.get('ratelimit-policy')).to.include('"user";q=5000;w=3600');
    expect(r.headers.get('ratelimit')).to.match(/"user";r=4999;t=\d+/);
    expect(r.headers.get('x-ratelimit-limit')).to.equal('5000');
    expect(r.headers.get('x-ratelimit-remaining')).to.equal('4999');
    expect(Number(r.headers.get('x-ratelimit-reset'))).to.be.greaterThan(0);
  });

  it("applies an API key's own hourly limit below the tier's, separately for each key", async () => {
    const u = await buildUser(d, { tier: 'enterprise' });
    const a = await buildApiKey(d, u, { rate_limit_per_hour: 3 });
    const b = await buildApiKey(d, u, { rate_limit_per_hour: 3 });
    const ra = await Promise.all(Array.from({ length: 5 }, () => d.api.get('/v1/me', { apiKey: a.key })));
    expect(ra.filter((r) => r.status === 200)).to.have.length(3);
    const limited = ra.find((r) => r.status === 429)!;
    expect(limited.body.error.details.limit).to.equal('api_key');
    expect((await d.api.get('/v1/me', { apiKey: b.key })).status).to.equal(200);
    expect((await d.api.get('/v1/me', { token: u.token })).status).to.equal(200);
  });

  it('limits unauthenticated routes per client address, ignoring a spoofed X-Forwarded-For', async () => {
    const fresh = await startDaemon({ shared, config: { limits: { ip_requests_per_hour: 5 } } });
    try {
      const rs = [];
      for (let i = 0; i < 7; i++) {
        rs.push(
          await fresh.api.post(
            '/v1/auth/refresh',
            { refresh_token: 'rt_' + 'x'.repeat(43) },
            { headers: { 'x-forwarded-for': `203.0.113.${i}` } },
          ),
        );
      }
      expect(rs.map((r) => r.status)).to.deep.equal([401, 401, 401, 401, 401, 429, 429]);
      expect(rs.slice(5).every((r) => r.status === 429 && r.body.error.details.limit === 'ip')).to.equal(true);
      expect((await fresh.api.get('/health/live')).status).to.equal(200);
    } finally {
      await fresh.stop();
    }
  });
});
