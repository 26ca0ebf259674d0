import type { AuthService, ClientInfo } from '../../auth/auth-service.js';
import type { Principal } from '../../auth/principal.js';
import { GatewayError } from '../../errors.js';
import type { AppContext, Middleware } from '../context.js';
import { authorize, userAgentOf, type Access } from '../edge.js';
import type { RouteSpec } from '../routes.js';

/** The principal of an authenticated request (set by `authenticate`). */
export function principalOf(ctx: AppContext): Principal {
  const p = ctx.state.auth as Principal | undefined;
  if (!p) throw new GatewayError('MISSING_TOKEN', 'authentication required');
  return p;
}

/** The request's id, client address and user agent, as the edge established them (request-context.ts). */
export function clientOf(ctx: AppContext): ClientInfo {
  return { ip: ctx.state.clientIp, userAgent: userAgentOf(ctx.get('User-Agent')), requestId: ctx.state.requestId };
}

/**
 * The guard chain of a route, from its spec: authenticate, then what runs once
 * the caller is known (rate limits), then the token-type, scope and policy
 * checks: the edge's `authorize` (daemon/http/edge.ts), which the stream uses too.
 */
export function routeGuards(deps: { auth: AuthService; afterAuthentication?: (spec: RouteSpec) => Middleware[] }) {
  const authenticate: Middleware = async (ctx, next) => {
    ctx.state.auth = await deps.auth.authenticate(ctx.get('Authorization') || undefined);
    await next();
  };
  const access =
    (needed: Access): Middleware =>
    async (ctx, next) => {
      authorize(principalOf(ctx as AppContext), needed);
      await next();
    };
  return (spec: RouteSpec): Middleware[] => {
    if (spec.auth === 'none') return [];
    const chain: Middleware[] = [authenticate, ...(deps.afterAuthentication?.(spec) ?? [])];
    if (spec.auth === 'bearer' || spec.scope || spec.policy) {
      chain.push(
        access({
          auth: spec.auth,
          ...(spec.scope ? { scope: spec.scope } : {}),
          ...(spec.policy ? { policy: spec.policy } : {}),
        }),
      );
    }
    return chain;
  };
}
