import { expect } from 'chai';
import type { Principal } from '../../../daemon/auth/principal.js';
import { ManualClock } from '../../../daemon/clock.js';
import { consumeBatch } from '../../../daemon/limits/batch.js';
import { MemoryRateLimiter } from '../../../daemon/limits/memory.js';
import {
  anonymousPolicies,
  checkAll,
  decisionRecords,
  failureModeOf,
  HOUR_MS,
  policiesFor,
  principalPolicies,
  type RateLimitPolicy,
} from '../../../daemon/limits/policy.js';
import type { BatchRateLimiter, RateLimiter } from '../../../daemon/limits/types.js';
import type { GatewayConfig } from '../../../schemas/types.gen.js';
import { describeShared } from '../../helpers/backends.js';
import { limiterFactory } from './support.js';

const tiers: GatewayConfig['tiers'] = {
  individual: { requests_per_hour: 1000, max_concurrent_sessions: 2, max_agents_per_session: 10 },
  team: { requests_per_hour: 5000, max_concurrent_sessions: 10, max_agents_per_session: 20 },
  enterprise: { requests_per_hour: 50_000, max_concurrent_sessions: 100, max_agents_per_session: 50 },
};

function principal(overrides: Partial<Principal> = {}): Principal {
  return {
    userId: 'usr_1',
    tenantId: null,
    email: 'a@example.com',
    role: 'member',
    tier: 'individual',
    scopes: ['agents:execute'],
    via: 'jwt',
    apiKeyId: null,
    apiKeyRateLimitPerHour: null,
    ...overrides,
  };
}

describe('rate limit policy selection', () => {
  it('a JWT user is limited by their tier, per hour, keyed by user id', () => {
    expect(principalPolicies(tiers, principal({ tier: 'team' }))).to.deep.equal([
      { name: 'user', key: 'user:usr_1', limit: 5000, windowMs: HOUR_MS },
    ]);
  });

  it('an API key adds its own hourly budget, 1000 unless the key says otherwise', () => {
    const viaKey = principal({ via: 'api_key', apiKeyId: 'key_9', tier: 'enterprise' });
    expect(principalPolicies(tiers, viaKey)).to.deep.equal([
      { name: 'user', key: 'user:usr_1', limit: 50_000, windowMs: HOUR_MS },
      { name: 'api_key', key: 'api_key:key_9', limit: 1000, windowMs: HOUR_MS },
    ]);
    const custom = principalPolicies(tiers, { ...viaKey, apiKeyRateLimitPerHour: 60 });
    expect(custom[1]).to.include({ name: 'api_key', limit: 60 });
  });

  it('an anonymous request is limited per client address', () => {
    expect(anonymousPolicies('203.0.113.9', 100)).to.deep.equal([
      { name: 'ip', key: 'ip:203.0.113.9', limit: 100, windowMs: HOUR_MS },
    ]);
    expect(policiesFor({ tiers, principal: null, ip: '::1', anonymousLimitPerHour: 30 })).to.deep.equal([
      { name: 'ip', key: 'ip:::1', limit: 30, windowMs: HOUR_MS },
    ]);
    expect(policiesFor({ tiers, principal: principal(), ip: '::1', anonymousLimitPerHour: 30 })[0]!.name).to.equal(
      'user',
    );
  });

  it('fail_closed wins when policies disagree on the failure mode', () => {
    const p = (failureMode?: 'fail_open' | 'fail_closed'): RateLimitPolicy => ({
      name: 'user',
      key: 'k',
      limit: 1,
      windowMs: 1,
      failureMode,
    });
    expect(failureModeOf([p('fail_open'), p('fail_closed')], 'fail_open')).to.equal('fail_closed');
    expect(failureModeOf([p('fail_open'), p()], 'fail_closed')).to.equal('fail_closed');
    expect(failureModeOf([p('fail_open'), p()], 'fail_open')).to.equal('fail_open');
    expect(failureModeOf([], 'fail_open')).to.equal('fail_open');
  });
});

describeShared('checkAll', (backend) => {
  const make = limiterFactory(backend);
  let limiter: BatchRateLimiter;
  const policies: RateLimitPolicy[] = [
    { name: 'user', key: 'user:usr_1', limit: 10, windowMs: HOUR_MS },
    { name: 'api_key', key: 'api_key:key_1', limit: 3, windowMs: HOUR_MS },
  ];

  beforeEach(() => {
    limiter = make({ clock: new ManualClock() });
  });

  it('charges every policy when all have room', async () => {
    const check = await checkAll(limiter, policies);
    expect(check.allowed).to.equal(true);
    expect(check.degraded).to.equal(false);
    expect(check.results.map((r) => [r.policy.name, r.decision.remaining])).to.deep.equal([
      ['user', 9],
      ['api_key', 2],
    ]);
    expect(decisionRecords(check)).to.deep.equal([
      { policy: 'user', outcome: 'allowed' },
      { policy: 'api_key', outcome: 'allowed' },
    ]);
  });

  it('a denial by one policy takes nothing from the others', async () => {
    for (let i = 0; i < 3; i++) expect((await checkAll(limiter, policies)).allowed).to.equal(true);
    for (let i = 0; i < 5; i++) {
      const check = await checkAll(limiter, policies);
      expect(check.allowed).to.equal(false);
      expect(decisionRecords(check)).to.deep.equal([
        { policy: 'user', outcome: 'skipped' },
        { policy: 'api_key', outcome: 'denied' },
      ]);
    }
    // The user's budget lost only the three admitted requests.
    expect((await limiter.peek('user:usr_1', 10, HOUR_MS)).remaining).to.equal(7);
    // Another key of the same user still works and shares the user budget.
    const other = [policies[0]!, { ...policies[1]!, key: 'api_key:key_2' }];
    expect((await checkAll(limiter, other, 2)).results[0]!.decision.remaining).to.equal(5);
  });
});

describe('consumeBatch on a limiter without consumeAll', () => {
  it('peeks first, so a denied batch takes nothing', async () => {
    const memory = new MemoryRateLimiter({ clock: new ManualClock() });
    // Hide consumeAll: the generic peek-then-consume path.
    const plain: RateLimiter = {
      consume: (...a) => memory.consume(...a),
      peek: (...a) => memory.peek(...a),
      reset: (k) => memory.reset(k),
      close: () => memory.close(),
    };
    await plain.consume('b', 1, HOUR_MS);
    const denied = await consumeBatch(plain, [
      { key: 'a', limit: 5, windowMs: HOUR_MS },
      { key: 'b', limit: 1, windowMs: HOUR_MS },
    ]);
    expect(denied.allowed).to.equal(false);
    expect((await plain.peek('a', 5, HOUR_MS)).remaining).to.equal(5);
    const allowed = await consumeBatch(plain, [{ key: 'a', limit: 5, windowMs: HOUR_MS, cost: 2 }]);
    expect(allowed.allowed).to.equal(true);
    expect(allowed.decisions[0]!.remaining).to.equal(3);
  });
});
