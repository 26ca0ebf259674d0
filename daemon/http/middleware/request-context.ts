import { performance } from 'node:perf_hooks';
import { accessLogger, type Logger } from '../../logger.js';
import type { Metrics } from '../../metrics.js';
import type { ClientIpResolver } from '../client-ip.js';
import type { Middleware } from '../context.js';
import { requestIdOf } from '../edge.js';
import { setSecurityHeaders } from './security-headers.js';

/**
 * Outermost middleware: request id (a well-formed incoming `X-Request-Id` is
 * kept, anything else replaced), the fixed security headers, client address,
 * one access-log line and the HTTP metrics. The log line carries the path without its query string, so
 * `?token=` or `?ticket=` never reaches a log.
 */
export function requestContext(deps: { logger: Logger; metrics: Metrics; clientIp: ClientIpResolver }): Middleware {
  // The access line's fields are fixed and carry no secret (the path has no query string), so it is
  // written by hand (daemon/logger.ts, accessLogger) without pino's redaction pass: at `info`, one per request.
  const access = accessLogger(deps.logger);
  const metrics = deps.metrics;
  return async (ctx, next) => {
    const start = performance.now();
    // The edge's rule (daemon/http/edge.ts), shared with the stream's upgrade.
    const requestId = requestIdOf(ctx.req.headers['x-request-id']);
    ctx.state.requestId = requestId;
    ctx.state.clientIp = deps.clientIp.resolve(ctx.req.socket.remoteAddress, ctx.req.headers['x-forwarded-for']);
    ctx.res.setHeader('X-Request-Id', requestId);
    setSecurityHeaders(ctx.res);
    try {
      await next();
    } finally {
      const ms = performance.now() - start;
      const route = (ctx as unknown as { _matchedRoute?: string })._matchedRoute ?? 'unmatched';
      const method = ctx.method;
      const status = ctx.status;
      metrics.observeRequest(method, route, status, ms / 1000);
      const level = status >= 500 ? 'error' : route.startsWith('/health') || route === '/metrics' ? 'debug' : 'info';
      access(level, {
        reqId: requestId,
        method,
        route,
        path: ctx.path,
        status,
        ms: Math.round(ms * 10) / 10,
        ip: ctx.state.clientIp,
      });
    }
  };
}
