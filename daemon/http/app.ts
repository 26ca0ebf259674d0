import Koa from 'koa';
import Router from '@koa/router';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { ClientIpResolver } from './client-ip.js';
import type { AppState, Middleware } from './context.js';
import { jsonBody } from './middleware/body.js';
import { errorHandler } from './middleware/errors.js';
import { requestContext } from './middleware/request-context.js';
import { securityHeaders } from './middleware/security-headers.js';
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
      else if (ctx.status === 200 && spec.response.status !== 200 && ctx.body !== undefined) ctx.status = spec.response.status;
    });
    router.register(spec.path, [spec.method], chain as never);
  }
  app.use(requestContext({ logger: deps.logger, metrics: deps.metrics, clientIp: new ClientIpResolver(deps.trustedProxies) }));
  app.use(errorHandler({ logger: deps.logger, metrics: deps.metrics }));
  app.use(securityHeaders());
  for (const m of jsonBody(deps.bodyLimitBytes)) app.use(m);
  app.use(router.routes() as never);
  app.use(router.allowedMethods() as never);
  return app;
}
