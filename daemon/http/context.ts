import type { ParameterizedContext, Middleware as KoaMiddleware } from 'koa';

/** What middleware learns about a request and hands to handlers. */
export interface AppState {
  requestId: string;
  clientIp: string;
  /** Set by the authentication middleware on authenticated routes. */
  auth?: unknown;
  [key: string]: unknown;
}

export type AppContext = ParameterizedContext<AppState> & { request: { body?: unknown } };
export type Middleware = KoaMiddleware<AppState>;
export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** The parsed JSON body, after the route's schema validated it. */
export const bodyOf = <T>(ctx: { request: unknown }): T => (ctx.request as { body?: unknown }).body as T;
