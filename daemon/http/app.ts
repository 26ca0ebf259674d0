import Koa from 'koa';
import Router from '@koa/router';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { ClientIpResolver } from './client-ip.js';
import type { AppState, Middleware } from './context.js';
import { jsonBody } from './middleware/body.js';
import { errorHandler } from './middleware/errors.js';
import { requestContext } from './middleware/request-context.js';
import type { RouteSpec } from './routes.js';
import { assertNoNul, type Validator } from './validation.js';

export interface AppDeps {
  logger: Logger;
  metrics: Metrics;
  validator: Validator;
  routes: RouteSpec[];
  bodyLimitBytes: number;
  trustedProxies: string[];
  /** Middleware a route needs before its handler, from its spec: authentication, scope, rate limit. */
  guards?: (spec: RouteSpec) => Middleware[];
}

/**
 * The Koa application. Each route reads top to bottom:
 * guards (authenticate, rate limit, scope) -> validate body/query -> handler.
 */
export function createApp(deps: AppDeps): Koa<AppState> {
  const app = new Koa<AppState>();
  app.silent = true; // errors are rendered and logged by errorHandler
  const router = new Router<AppState>();
  const direct = new Map<string, { path: string; chain: Middleware[] }>();
  for (const spec of deps.routes) {
    const chain: Middleware[] = [...(deps.guards?.(spec) ?? []), ...(spec.use ?? [])];
    // No string a route reads may hold U+0000 (Postgres text cannot store it): path parameters
    // here, the query string here when no schema checks it, bodies and checked queries in the Validator.
    const hasParams = spec.path.includes(':');
    chain.push(async (ctx, next) => {
      if (hasParams) assertNoNul({ ...ctx.params }, 'path');
      if (!spec.query) assertNoNul({ ...ctx.query }, 'query');
      await next();
    });
    if (spec.body) {
      const name = spec.body;
      chain.push(async (ctx, next) => {
        deps.validator.check(name, (ctx.request as { body?: unknown }).body ?? {});
        await next();
      });
    }
    if (spec.query) {
      const name = spec.query;
      chain.push(async (ctx, next) => {
        deps.validator.check(name, { ...ctx.query }, 'query');
        await next();
      });
    }
    chain.push(async (ctx) => {
      await spec.handler(ctx as never);
      if (ctx.status === 404 && ctx.body === undefined) ctx.status = spec.response.status;
      else if (ctx.status === 200 && spec.response.status !== 200 && ctx.body !== undefined)
        ctx.status = spec.response.status;
    });
    router.register(spec.path, [spec.method], chain as never);
    if (STATIC_PATH.test(spec.path)) direct.set(`${spec.method} ${spec.path}`, { path: spec.path, chain });
  }
  app.use(
    requestContext({ logger: deps.logger, metrics: deps.metrics, clientIp: new ClientIpResolver(deps.trustedProxies) }),
  );
  // The security headers (security-headers.ts) are set by requestContext with X-Request-Id, one layer fewer.
  app.use(errorHandler({ logger: deps.logger, metrics: deps.metrics }));
  for (const m of jsonBody(deps.bodyLimitBytes)) app.use(m);
  app.use(staticRoutes(router, direct));
  app.use(router.allowedMethods() as never);
  return app;
}

/** A route path without parameters, wildcards or anything a path pattern treats specially. */
const STATIC_PATH = /^[/A-Za-z0-9._-]+$/;

/**
 * The router, with a shortcut for the routes without path parameters (the hot reads among them): a
 * request whose method and path are exactly those of such a route runs that route's chain, composed
 * once, with the context fields the router would have set. @koa/router matches every route's pattern
 * and composes the matched chain anew on each request. Only routes that the router itself would
 * dispatch alone are taken (no other route's pattern matches the path for that method); anything
 * else (another spelling of the path, a trailing slash, HEAD, a parameter route) goes to the router.
 */
function staticRoutes(
  router: Router<AppState>,
  routes: Map<string, { path: string; chain: Middleware[] }>,
): Middleware {
  const routerMiddleware = router.routes() as unknown as Middleware;
  const direct = new Map<string, { path: string; layers: unknown[]; run: Middleware }>();
  for (const [key, { path, chain }] of routes) {
    const method = key.slice(0, key.indexOf(' '));
    const matched = router.match(path, method);
    const layers = matched.pathAndMethod;
    if (!matched.route || layers.length !== 1 || layers[0]!.path !== path || matched.path.length !== 1) continue;
    direct.set(key, { path, layers: matched.path, run: compose(chain) });
  }
  return (ctx, next) => {
    const hit = direct.get(`${ctx.method} ${ctx.path}`);
    if (hit === undefined) return routerMiddleware(ctx, next);
    // What @koa/router sets for a matched route without parameters (its middleware(), then the layer's).
    const c = ctx as unknown as Record<string, unknown>;
    c.matched = hit.layers;
    c.router = router;
    c.routeMatched = true;
    c._matchedRoute = hit.path;
    c.captures = [];
    c.params = (ctx.request as unknown as Record<string, unknown>).params = {};
    c.routerPath = hit.path;
    c.routerName = undefined;
    return hit.run(ctx, next);
  };
}

/** koa-compose: each middleware gets the next as `next`, once; the last one's is the caller's `next`. */
function compose(chain: Middleware[]): Middleware {
  return (ctx, next) => {
    let index = -1;
    const dispatch = (i: number): Promise<void> => {
      if (i <= index) return Promise.reject(new Error('next() called multiple times'));
      index = i;
      const fn = i === chain.length ? next : chain[i];
      if (!fn) return Promise.resolve();
      try {
        return Promise.resolve(fn(ctx, dispatch.bind(null, i + 1)));
      } catch (err) {
        return Promise.reject(err);
      }
    };
    return dispatch(0);
  };
}
