import type { Scope } from '../auth/principal.js';
import type { RoutePolicy } from '../policies/index.js';
import type { AppContext, HttpMethod, Middleware } from './context.js';

/**
 * A route declared once: the router, the validator and /openapi.json all read it.
 * Handlers call one domain service and set `ctx.body`; they hold no business rules.
 */
export interface RouteSpec {
  method: HttpMethod;
  /** Koa-router path, e.g. `/v1/sessions/:id`. */
  path: string;
  summary: string;
  tag: string;
  /** `none`: public. `any`: JWT or API key. `bearer`: JWT only (account management). */
  auth: 'none' | 'any' | 'bearer';
  /** Scope the credential must carry (docs/API.md): 403 INSUFFICIENT_SCOPE without it. */
  scope?: Scope;
  /**
   * Who may call it beyond the scope (daemon/policies): `administrator` (a tenant
   * or platform admin acting as one), `platform_admin`; 403 FORBIDDEN otherwise.
   */
  policy?: RoutePolicy;
  /** Schema name under schemas/api/ for the JSON body. */
  body?: string;
  /** The body may be left out (checked as `{}`); OpenAPI marks it not required. */
  bodyOptional?: boolean;
  /** Schema name under schemas/api/ for the query string. */
  query?: string;
  /**
   * Success status and schema name of the response body. `otherContentTypes`: media types the
   * success may also come in (text bodies, e.g. CSV on request); `headers`: response headers the
   * handler itself sets on a success, beyond the ones the middleware sets (daemon/http/openapi.ts).
   */
  response: {
    status: number;
    schema?: string;
    description?: string;
    contentType?: string;
    otherContentTypes?: string[];
    headers?: Record<string, { description: string; required?: boolean; schema?: Record<string, unknown> }>;
  };
  /** Error codes this route may answer with, beyond the ones every route can. */
  errors?: string[];
  /**
   * Honours an `Idempotency-Key` request header (docs/API.md, "Idempotency"): a retry answers
   * the stored response with `Idempotent-Replayed: true`; 409 IDEMPOTENCY_KEY_REUSED / _IN_USE.
   */
  idempotent?: boolean;
  /** Extra middleware between authentication and the handler (rate limits, ...). */
  use?: Middleware[];
  handler: (ctx: AppContext) => Promise<void> | void;
}

export const defineRoutes = (routes: RouteSpec[]): RouteSpec[] => routes;

/**
 * Whether the request limit (daemon/http/middleware/rate-limit.ts) runs on a route, as
 * daemon/container.ts wires the guards: after authentication on every authenticated route,
 * per client address on the public `/v1/` ones; never on /health, /metrics, /openapi.json.
 */
export const isRateLimited = (spec: Pick<RouteSpec, 'auth' | 'path'>): boolean => spec.auth !== 'none' || spec.path.startsWith('/v1/');
