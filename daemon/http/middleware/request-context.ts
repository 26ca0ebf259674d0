import { newId } from '../../ids.js';
import type { Logger } from '../../logger.js';
import type { Metrics } from '../../metrics.js';
import type { ClientIpResolver } from '../client-ip.js';
import type { Middleware } from '../context.js';

const INCOMING_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$/;

/**
 * Outermost middleware: request id (a well-formed incoming `X-Request-Id` is
 * kept, anything else replaced), client address, one access-log line and the
 * HTTP metrics. The log line carries the path without its query string, so
 * `?token=` or `?ticket=` never reaches a log.
 */
export function requestContext(deps: { logger: Logger; metrics: Metrics; clientIp: ClientIpResolver }): Middleware {
  // The access line's fields are fixed and carry no secret (the path has no query string), so it
  // skips the redaction pass every other log object gets: at `info`, one such line per request.
  const access = deps.logger.child({}, { redact: [] });
  return async (ctx, next) => {
    const start = process.hrtime.bigint();
    const incoming = ctx.get('X-Request-Id');
    ctx.state.requestId = INCOMING_ID.test(incoming) ? incoming : newId('req');
    ctx.state.clientIp = deps.clientIp.resolve(ctx.req.socket.remoteAddress, ctx.req.headers['x-forwarded-for']);
    ctx.set('X-Request-Id', ctx.state.requestId);
    try {
      await next();
    } finally {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      const route = (ctx as unknown as { _matchedRoute?: string })._matchedRoute ?? 'unmatched';
      const labels = { method: ctx.method, route: String(route), status: String(ctx.status) };
      deps.metrics.httpRequests.inc(labels);
      deps.metrics.httpDuration.observe(labels, seconds);
      const level = ctx.status >= 500 ? 'error' : route.startsWith('/health') || route === '/metrics' ? 'debug' : 'info';
      access[level](
        {
          req_id: ctx.state.requestId,
          method: ctx.method,
          route,
          path: ctx.path,
          status: ctx.status,
          ms: Math.round(seconds * 1e4) / 10,
          ip: ctx.state.clientIp,
        },
        'request',
      );
    }
  };
}
