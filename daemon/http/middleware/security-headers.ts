import type { ServerResponse } from 'node:http';
import type { Middleware } from '../context.js';

/**
 * Headers for a JSON API that no browser should render, frame or cache (docs/API.md, "Headers").
 * HSTS is left to the TLS-terminating proxy, which knows whether TLS is in use.
 */
export const SECURITY_HEADERS: ReadonlyArray<readonly [string, string]> = Object.freeze([
  ['X-Content-Type-Options', 'nosniff'],
  ['X-Frame-Options', 'DENY'],
  ['Referrer-Policy', 'no-referrer'],
  ['Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'"],
  ['Cross-Origin-Resource-Policy', 'same-origin'],
  ['Cache-Control', 'no-store'],
] as const);

/**
 * Sets every security header on `res`, straight on Node's response: the names and values are fixed
 * strings, so Koa's per-call work (`ctx.set`: header-sent check, array and string coercion) is skipped.
 */
export function setSecurityHeaders(res: ServerResponse): void {
  for (const [name, value] of SECURITY_HEADERS) res.setHeader(name, value);
}

/** The headers as middleware, set before anything downstream runs (a route may still override one). */
export function securityHeaders(): Middleware {
  return (ctx, next) => {
    setSecurityHeaders(ctx.res);
    return next();
  };
}
