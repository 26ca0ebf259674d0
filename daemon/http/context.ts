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

/** The `limit` query parameter as a number, or `fallback` when absent (the route's query schema already bounded it). */
export const limitOf = (ctx: AppContext, fallback: number): number => Number(ctx.query.limit ?? fallback);

/** The `cursor` query parameter when it is a string, else null. */
export const cursorOf = (ctx: AppContext): string | null =>
  typeof ctx.query.cursor === 'string' ? ctx.query.cursor : null;
