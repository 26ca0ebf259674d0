import { expect } from 'chai';
import { HOUR_MS } from '../../../daemon/limits/policy.js';
import { describeShared } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildUser } from '../../helpers/factories.js';
import type { ApiResponse } from '../../helpers/http.js';
import { metricValue } from './support.js';

const TIER_LIMIT = 10;

describeShared('a denial by one policy takes nothing from the others, over HTTP', (shared) => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon({ shared, config: { tiers: { individual: { requests_per_hour: TIER_LIMIT } } } });
  });
  after(async () => d?.stop());

  const decisions = async (policy: string, outcome: string) =>
    metricValue((await d.api.get('/metrics')).text, 'keen_ratelimit_decisions_total', { policy, outcome });

  async function sequence(n: number, send: () => Promise<ApiResponse>): Promise<ApiResponse[]> {
    const out: ApiResponse[] = [];
    for (let i = 0; i < n; i++) out.push(await send());
    return out;
  }

  it("an API key at its limit does not eat the user's tier budget", async () => {
    const u = await buildUser(d, { tier: 'individual' });
    const k = await d.container.users.createApiKey(null, u.user, { name: 'small', rate_limit_per_hour: 3 });
    const skippedBefore = await decisions('user', 'skipped');

    const withKey = await sequence(8, () => d.api.get('/v1/me', { apiKey: k.key }));
    expect(withKey.map((r) => r.status)).to.deep.equal([200, 200, 200, 429, 429, 429, 429, 429]);
    for (const r of withKey.slice(3)) {
      expect(r.body.error.details).to.include({ limit: 'api_key', max: 3, current: 3 });
      expect(r.headers.get('ratelimit')).to.match(/^"api_key";r=0;t=\d+$/);
      expect(Number(r.headers.get('retry-after'))).to.be.at.least(1);
    }
    expect(
      (await decisions('user', 'skipped')) - skippedBefore,
      'the user policy had room and was not charged',
    ).to.equal(5);

    // The user spent 3 (the key's allowed requests), not 8: 7 left for the JWT.
    const withJwt = await sequence(TIER_LIMIT - 3 + 1, () => d.api.get('/v1/me', { token: u.token }));
    expect(withJwt[0]!.headers.get('x-ratelimit-remaining')).to.equal(String(TIER_LIMIT - 4));
    expect(withJwt[0]!.headers.get('ratelimit')).to.match(new RegExp(`^"user";r=${TIER_LIMIT - 4};t=\\d+$`));
    expect(withJwt.map((r) => r.status)).to.deep.equal([...Array(TIER_LIMIT - 3).fill(200), 429]);
    expect(withJwt.at(-1)!.body.error.details).to.include({ limit: 'user', max: TIER_LIMIT });
  });

  it("a user at its tier limit does not eat its keys' budgets", async () => {
    const u = await buildUser(d, { tier: 'individual' });
    const k = await d.container.users.createApiKey(null, u.user, { name: 'medium', rate_limit_per_hour: 5 });
    const withJwt = await sequence(TIER_LIMIT, () => d.api.get('/v1/me', { token: u.token }));
    expect(withJwt.every((r) => r.status === 200)).to.equal(true);

    const withKey = await sequence(4, () => d.api.get('/v1/me', { apiKey: k.key }));
    for (const r of withKey) {
      expect(r.status).to.equal(429);
      expect(r.body.error.details).to.include({ limit: 'user', max: TIER_LIMIT });
      expect(r.headers.get('ratelimit-policy')).to.equal(`"user";q=${TIER_LIMIT};w=3600, "api_key";q=5;w=3600`);
    }
    // The key's own budget is untouched: all 5 units left on the shared limiter.
    const keyBudget = await d.container.limiter.peek(`api_key:${k.row.id}`, 5, HOUR_MS);
    expect(keyBudget).to.include({ allowed: true, remaining: 5 });
  });

  it('two keys of one user: one at its limit leaves the other its whole budget', async () => {
    const u = await buildUser(d, { tier: 'individual' });
    const a = await d.container.users.createApiKey(null, u.user, { name: 'a', rate_limit_per_hour: 2 });
    const b = await d.container.users.createApiKey(null, u.user, { name: 'b', rate_limit_per_hour: 4 });
    expect((await sequence(5, () => d.api.get('/v1/me', { apiKey: a.key }))).map((r) => r.status)).to.deep.equal([
      200, 200, 429, 429, 429,
    ]);
    const first = await d.api.get('/v1/me', { apiKey: b.key });
    expect(first.status).to.equal(200);
    // b's budget (4) binds before the user's (10 - 3 = 7 left): r=3.
    expect(first.headers.get('ratelimit')).to.match(/^"api_key";r=3;t=\d+$/);
  });
});
