import { expect } from 'chai';
import { GatewayError } from '../../../daemon/errors.js';
import {
  denialDetails,
  mostRestrictive,
  rateLimitedError,
  rateLimitHeaders,
  toSeconds,
} from '../../../daemon/limits/headers.js';
import type { CheckResult, PolicyResult } from '../../../daemon/limits/policy.js';
import type { RateLimitDecision } from '../../../daemon/limits/types.js';

const HOUR = 3_600_000;

function result(name: 'user' | 'api_key' | 'ip', limit: number, d: Partial<RateLimitDecision>): PolicyResult {
  return {
    policy: { name, key: `${name}:x`, limit, windowMs: HOUR },
    decision: { allowed: true, limit, remaining: limit, resetMs: 0, retryAfterMs: 0, ...d },
  };
}

describe('rate limit headers', () => {
  it('list every policy and describe the most restrictive one (draft-ietf-httpapi-ratelimit-headers)', () => {
    const results = [
      result('user', 1000, { remaining: 998, resetMs: 3_579_001 }),
      result('api_key', 1000, { remaining: 999, resetMs: 3_599_000 }),
    ];
    expect(rateLimitHeaders(results)).to.deep.equal({
      'RateLimit-Policy': '"user";q=1000;w=3600, "api_key";q=1000;w=3600',
      RateLimit: '"user";r=998;t=3580',
      'X-RateLimit-Limit': '1000',
      'X-RateLimit-Remaining': '998',
      'X-RateLimit-Reset': '3580',
    });
  });

  it('pick the policy with fewer units left, whatever its limit', () => {
    const results = [
      result('user', 5000, { remaining: 4000, resetMs: 1000 }),
      result('api_key', 60, { remaining: 12, resetMs: 500 }),
    ];
    expect(mostRestrictive(results)!.policy.name).to.equal('api_key');
    expect(rateLimitHeaders(results)).to.include({ RateLimit: '"api_key";r=12;t=1', 'X-RateLimit-Limit': '60' });
    expect(mostRestrictive([])).to.equal(null);
    expect(rateLimitHeaders([])).to.deep.equal({});
  });

  it('name the denying policy, add Retry-After in whole seconds (rounded up, at least 1) and details', () => {
    const results = [
      result('user', 1000, { remaining: 10, resetMs: 100_000 }),
      result('api_key', 60, { allowed: false, remaining: 0, resetMs: 3_000_000, retryAfterMs: 1_500 }),
    ];
    const headers = rateLimitHeaders(results);
    expect(headers).to.include({ RateLimit: '"api_key";r=0;t=3000', 'Retry-After': '2', 'X-RateLimit-Remaining': '0' });
    expect(denialDetails(results[1]!)).to.deep.equal({ limit: 'api_key', max: 60, current: 60, retry_after: 2 });

    const check: CheckResult = { allowed: false, degraded: false, results };
    const err = rateLimitedError(check);
    expect(err).to.be.instanceOf(GatewayError);
    expect(err).to.include({ code: 'RATE_LIMITED', status: 429, type: 'RATE_LIMIT_ERROR' });
    expect(err.details).to.deep.equal({ limit: 'api_key', max: 60, current: 60, retry_after: 2 });
    expect(err.headers).to.deep.equal(headers);
  });

  it('among several denials, name the one that frees up last', () => {
    const results = [
      result('user', 5, { allowed: false, remaining: 0, retryAfterMs: 9_000 }),
      result('ip', 5, { allowed: false, remaining: 0, retryAfterMs: 1 }),
    ];
    expect(rateLimitHeaders(results)['Retry-After']).to.equal('9');
    expect(rateLimitHeaders([results[1]!])['Retry-After']).to.equal('1');
  });

  it('round seconds up, never below the floor', () => {
    expect([0, 1, 999, 1000, 1001].map((ms) => toSeconds(ms))).to.deep.equal([0, 1, 1, 1, 2]);
    expect(toSeconds(0, 1)).to.equal(1);
  });

  it('refuse to build a 429 for an allowed check', () => {
    expect(() => rateLimitedError({ allowed: true, degraded: false, results: [result('user', 1, {})] })).to.throw();
  });
});
