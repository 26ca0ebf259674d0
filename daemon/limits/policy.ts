import type { Principal } from '../auth/principal.js';
import type { GatewayConfig } from '../../schemas/types.gen.js';
import { consumeBatch } from './batch.js';
import type { DecisionRecord } from './metrics.js';
import { ResilientRateLimiter, type FailureMode } from './resilient.js';
import type { BatchRequest, RateLimitDecision, RateLimiter } from './types.js';

/** The budgets a request is charged to. Names appear in headers, error details and metric labels. */
export type PolicyName = 'user' | 'api_key' | 'ip';

/** One budget to check for a request. */
export interface RateLimitPolicy {
  name: PolicyName;
  /** The limiter key, namespaced by policy so two policies never share a budget. */
  key: string;
  limit: number;
  windowMs: number;
  /** What to do when the backend is down; unset: the limiter's default. */
  failureMode?: FailureMode;
}

export const HOUR_MS = 3_600_000;
/** docs/rate-limits.md: an API key created without `rate_limit_per_hour` gets 1000 requests per hour. */
export const DEFAULT_API_KEY_LIMIT_PER_HOUR = 1000;

/**
 * The policies of an authenticated request: the user's tier budget per hour
 * (keyed by user id, so a tier change keeps the count and changes the limit),
 * plus the key's own hourly budget when the request came with an API key.
 */
export function principalPolicies(tiers: GatewayConfig['tiers'], principal: Principal): RateLimitPolicy[] {
  const policies: RateLimitPolicy[] = [
    {
      name: 'user',
      key: `user:${principal.userId}`,
      limit: tiers[principal.tier].requests_per_hour,
      windowMs: HOUR_MS,
    },
  ];
  if (principal.via === 'api_key' && principal.apiKeyId !== null) {
    policies.push({
      name: 'api_key',
      key: `api_key:${principal.apiKeyId}`,
      limit: principal.apiKeyRateLimitPerHour ?? DEFAULT_API_KEY_LIMIT_PER_HOUR,
      windowMs: HOUR_MS,
    });
  }
  return policies;
}

/** The policy of an unauthenticated route: per client address (as resolved behind trusted proxies). */
export function anonymousPolicies(ip: string, limit: number, windowMs = HOUR_MS): RateLimitPolicy[] {
  return [{ name: 'ip', key: `ip:${ip}`, limit, windowMs }];
}

/** Policies for a request: the principal's when authenticated, else the address's. */
export function policiesFor(input: {
  tiers: GatewayConfig['tiers'];
  principal: Principal | null;
  ip: string;
  anonymousLimitPerHour: number;
}): RateLimitPolicy[] {
  return input.principal
    ? principalPolicies(input.tiers, input.principal)
    : anonymousPolicies(input.ip, input.anonymousLimitPerHour);
}

/** One policy and what the limiter said about it. */
export interface PolicyResult {
  policy: RateLimitPolicy;
  decision: RateLimitDecision;
}

export interface CheckResult {
  /** Every policy had room, and every one was charged. */
  allowed: boolean;
  /** The backend failed and the request was let through (fail_open). */
  degraded: boolean;
  /** In the order of the policies given. */
  results: PolicyResult[];
}

/**
 * Charges `cost` to every policy, all or nothing: a request denied by one
 * policy takes nothing from the others (atomically on both shipped backends;
 * see `consumeBatch`). With a ResilientRateLimiter, a backend failure fails
 * closed if any policy asks for it, open if all ask for fail_open, and
 * otherwise follows the limiter's default.
 */
export async function checkAll(limiter: RateLimiter, policies: RateLimitPolicy[], cost = 1): Promise<CheckResult> {
  const requests = cost === 1 ? unitRequestsOf(policies) : batchRequests(policies, cost);
  const batch =
    limiter instanceof ResilientRateLimiter
      ? await limiter.consumeAll(requests, failureModeOf(policies, limiter.mode))
      : await consumeBatch(limiter, requests);
  return {
    allowed: batch.allowed,
    degraded: batch.degraded === true,
    results: policies.map((policy, i) => ({ policy, decision: batch.decisions[i]! })),
  };
}

function batchRequests(policies: RateLimitPolicy[], cost: number): BatchRequest[] {
  return policies.map((p) => ({ key: p.key, limit: p.limit, windowMs: p.windowMs, cost }));
}

/**
 * The limiter requests of a cost of 1, built once per policies array: the rate-limit middleware
 * passes the same array for every request of a kept principal. The policies are never changed once
 * built, and no limiter changes the requests it is given.
 */
const unitRequests = new WeakMap<RateLimitPolicy[], BatchRequest[]>();
function unitRequestsOf(policies: RateLimitPolicy[]): BatchRequest[] {
  let requests = unitRequests.get(policies);
  if (requests === undefined) unitRequests.set(policies, (requests = batchRequests(policies, 1)));
  return requests;
}

/** fail_closed wins: one policy that must not be bypassed is enough to refuse. */
export function failureModeOf(policies: RateLimitPolicy[], fallback: FailureMode): FailureMode {
  let any = false;
  for (const p of policies) {
    if ((p.failureMode ?? fallback) === 'fail_closed') return 'fail_closed';
    any = true;
  }
  return any ? 'fail_open' : fallback;
}

/** The per-policy outcomes of a check, for RateLimitMetrics.recordDecisions. */
export function decisionRecords(check: CheckResult): DecisionRecord[] {
  return check.results.map(({ policy, decision }) => ({
    policy: policy.name,
    outcome: check.degraded ? 'degraded' : check.allowed ? 'allowed' : decision.allowed ? 'skipped' : 'denied',
  }));
}
