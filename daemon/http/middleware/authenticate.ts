import type { AuthService, ClientInfo } from '../../auth/auth-service.js';
import type { Principal, Scope } from '../../auth/principal.js';
import { GatewayError } from '../../errors.js';
import { assertRoutePolicy, assertScope, type RoutePolicy } from '../../policies/index.js';
import type { AppContext, Middleware } from '../context.js';
import type { RouteSpec } from '../routes.js';

/** The principal of an authenticated request (set by `authenticate`). */
export function principalOf(ctx: AppContext): Principal {
  const p = ctx.state.auth as Principal | undefined;
  if (!p) throw new GatewayError('MISSING_TOKEN', 'authentication required');
  return p;
}

export function clientOf(ctx: AppContext): ClientInfo {
  const ua = ctx.get('User-Agent');
  return { ip: ctx.state.clientIp, userAgent: ua ? ua.slice(0, 256) : null, requestId: ctx.state.requestId };
}

/**
 * The guard chain of a route, from its spec: authenticate, then what runs once
 * the caller is known (rate limits), then the token-type, scope and policy
 * checks (daemon/policies).
 */
export function routeGuards(deps: { auth: AuthService; afterAuthentication?: (spec: RouteSpec) => Middleware[] }) {
  const authenticate: Middleware = async (ctx, next) => {
    ctx.state.auth = await deps.auth.authenticate(ctx.get('Authorization') || undefined);
    await next();
  };
  const bearerOnly: Middleware = async (ctx, next) => {
    if (principalOf(ctx as AppContext).via !== 'jwt') {
      throw new GatewayError('FORBIDDEN', "this endpoint needs a user's access token (Bearer), not an API key");
    }
    await next();
  };
  const scope = (needed: Scope): Middleware => async (ctx, next) => {
    assertScope(principalOf(ctx as AppContext), needed);
    await next();
  };
  const policy = (needed: RoutePolicy): Middleware => async (ctx, next) => {
    assertRoutePolicy(principalOf(ctx as AppContext), needed);
    await next();
  };
  return (spec: RouteSpec): Middleware[] => {
    if (spec.auth === 'none') return [];
    const chain: Middleware[] = [authenticate, ...(deps.afterAuthentication?.(spec) ?? [])];
    if (spec.auth === 'bearer') chain.push(bearerOnly);
    if (spec.scope) chain.push(scope(spec.scope));
    if (spec.policy) chain.push(policy(spec.policy));
    return chain;
  };
}
