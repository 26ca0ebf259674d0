import type { GatewayConfig } from '../../../schemas/types.gen.js';
import { ANONYMOUS_ACTOR, actorOf } from '../../audit/actor.js';
import type { AuditEvent } from '../../audit/types.js';
import type { Principal } from '../../auth/principal.js';
import { GatewayError } from '../../errors.js';
import { rateLimitHeaders, rateLimitedError } from '../../limits/headers.js';
import type { RateLimitMetrics } from '../../limits/metrics.js';
import { checkAll, decisionRecords, policiesFor, type RateLimitPolicy } from '../../limits/policy.js';
import type { RateLimiter } from '../../limits/types.js';
import { isKept, type Kept } from '../../storage/database.js';
import type { Middleware } from '../context.js';

/**
 * Request limits: per user and tier, per API key, or per address before
 * authentication. All of a request's budgets are decided at once (a denial by
 * one takes nothing from the others). When the limiter's backend is down,
 * reads go through (fail open) and writes are refused with 503 (fail closed):
 * a write may spend credits or start an agent, a read costs little.
 */
export function rateLimit(deps: {
  limiter: RateLimiter;
  metrics: RateLimitMetrics;
  tiers: GatewayConfig['tiers'];
  ipRequestsPerHour: number;
  /** Denials go to the audit log aggregated per actor and minute, so a flood cannot flood the log. */
  onDenied?: (event: AuditEvent) => void;
}): Middleware {
  /**
   * The policies of a principal, per failure mode, built once: a `Kept`
   * principal (built by AuthService from a kept row) is the same object request
   * after request; any other is new each time, and is not cached.
   */
  const built = new WeakMap<Kept<Principal>, { open?: RateLimitPolicy[]; closed?: RateLimitPolicy[] }>();
  const make = (principal: Principal | null, ip: string, mode: 'fail_open' | 'fail_closed'): RateLimitPolicy[] =>
    policiesFor({ tiers: deps.tiers, principal, ip, anonymousLimitPerHour: deps.ipRequestsPerHour }).map((p) => ({
      ...p,
      failureMode: mode,
    }));
  const policiesOf = (
    principal: Principal | null,
    ip: string,
    mode: 'fail_open' | 'fail_closed',
  ): RateLimitPolicy[] => {
    if (principal === null || !isKept(principal)) return make(principal, ip, mode);
    let entry = built.get(principal);
    if (!entry) built.set(principal, (entry = {}));
    const key = mode === 'fail_open' ? 'open' : 'closed';
    return (entry[key] ??= make(principal, ip, mode));
  };
  return async (ctx, next) => {
    const policies = policiesOf(
      (ctx.state.auth as Principal | undefined) ?? null,
      ctx.state.clientIp,
      ctx.method === 'GET' ? 'fail_open' : 'fail_closed',
    );
    const check = await checkAll(deps.limiter, policies);
    deps.metrics.recordDecisions(decisionRecords(check));
    if (!check.allowed) {
      const principal = (ctx.state.auth as Principal | undefined) ?? null;
      deps.onDenied?.({
        action: 'ratelimit.denied',
        outcome: 'denied',
        actor: principal ? actorOf(principal) : ANONYMOUS_ACTOR,
        tenantId: principal?.tenantId ?? null,
        ip: ctx.state.clientIp,
        requestId: ctx.state.requestId,
        details: { policies: check.results.filter((r) => !r.decision.allowed).map((r) => r.policy.name) },
      });
      throw rateLimitedError(check);
    }
    ctx.set(rateLimitHeaders(check.results));
    try {
      await next();
    } catch (err) {
      // A denial by a concurrency limit does not spend request quota.
      if (err instanceof GatewayError && err.code === 'CONCURRENCY_LIMIT' && !check.degraded) {
        await Promise.all(policies.map((p) => deps.limiter.refund?.(p.key, p.windowMs, 1)));
      }
      throw err;
    }
  };
}
