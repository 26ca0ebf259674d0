import type { ApiSchemas } from '../../schemas/types.gen.js';
import type { Scope } from '../auth/principal.js';
import type { ErrorCode } from '../errors.js';
import type { RoutePolicy } from '../policies/index.js';
import type { AppContext, HttpMethod, Middleware } from './context.js';

/** The name of an API schema: its file under schemas/api/, a key of the generated `ApiSchemas`. */
export type SchemaName = keyof ApiSchemas;

/**
 * What a handler returns for a JSON success: the response schema without the envelope's
 * `success: true`, which the edge adds once (`defineRoute`).
 */
export type Payload<R extends SchemaName> = Omit<ApiSchemas[R], 'success'>;

/**
 * A handler returns this when it set `ctx.body` itself: a text or CSV body on request, or a
 * stored answer replayed whole. Nothing is added to it.
 */
export const RAW: unique symbol = Symbol('raw body');

/** What the success of a route looks like in its spec (and in /openapi.json). */
export interface ResponseSpec<R extends SchemaName = SchemaName> {
  status: number;
  /** The schema of the JSON body; without one, the handler sets `ctx.body` itself. */
  schema?: R;
  description?: string;
  contentType?: string;
  /** Media types the success may also come in (text bodies, e.g. CSV on request). */
  otherContentTypes?: string[];
  /** Response headers the handler itself sets on a success, beyond the middleware's (openapi.ts). */
  headers?: Record<string, { description: string; required?: boolean; schema?: Record<string, unknown> }>;
}

/** What every route declares beyond its types: the router, the guards and /openapi.json read it. */
interface RouteMeta {
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
  /** The body may be left out (checked as `{}`); OpenAPI marks it not required. */
  bodyOptional?: boolean;
  /** Error codes this route may answer with, beyond the ones every route can. */
  errors?: ErrorCode[];
  /**
   * Honours an `Idempotency-Key` request header (docs/API.md, "Idempotency"): a retry answers
   * the stored response with `Idempotent-Replayed: true`; 409 IDEMPOTENCY_KEY_REUSED / _IN_USE.
   */
  idempotent?: boolean;
  /** Extra middleware between authentication and the handler (rate limits, ...). */
  use?: Middleware[];
}

/**
 * A route as the router, the validator and /openapi.json read it (`defineRoute` makes one).
 * `body` and `query` name the schemas the request is validated against before the handler.
 */
export interface RouteSpec extends RouteMeta {
  body?: SchemaName;
  query?: SchemaName;
  response: ResponseSpec;
  handler: (ctx: AppContext) => Promise<void> | void;
}

/** The validated JSON body a handler reads: the body schema's type (or none). */
type BodyOf<B extends SchemaName, O extends boolean> = [B] extends [never]
  ? unknown
  : O extends true
    ? ApiSchemas[B] | undefined
    : ApiSchemas[B];

/** The context a typed handler gets: `ctx.request.body` and `ctx.query` typed from their schemas. */
export type RouteContext<
  B extends SchemaName = never,
  Q extends SchemaName = never,
  O extends boolean = false,
> = AppContext & {
  request: { body: BodyOf<B, O> };
} & ([Q] extends [never] ? unknown : { query: ApiSchemas[Q] });

/** What a typed handler produces: the payload of its response schema (or `RAW`); nothing without a schema. */
// biome-ignore lint/suspicious/noConfusingVoidType: a handler without a response schema returns nothing.
export type HandlerResult<R extends SchemaName> = [R] extends [never] ? void : Payload<R> | typeof RAW;

/** A route declared once, typed from the schemas it names (`defineRoute`). */
export interface RouteDefinition<B extends SchemaName, Q extends SchemaName, R extends SchemaName, O extends boolean>
  extends RouteMeta {
  /** Schema name under schemas/api/ of the JSON body; the handler gets its type. */
  body?: B;
  bodyOptional?: O;
  /** Schema name under schemas/api/ of the query string; the handler gets its type. */
  query?: Q;
  response: ResponseSpec<R>;
  /**
   * Calls one domain service and returns the payload through a presenter; holds no business
   * rules. It may set `ctx.status` and headers; `ctx.body` only for a body the edge must not
   * wrap (then it returns `RAW`, or nothing on a route without a response schema).
   */
  handler: (
    ctx: RouteContext<NoInfer<B>, NoInfer<Q>, NoInfer<O>>,
  ) => Promise<HandlerResult<NoInfer<R>>> | HandlerResult<NoInfer<R>>;
}

/**
 * Declares a route: its `body`, `query` and `response.schema` are names of schemas/api/ files,
 * so the handler's input and output types come from the same schemas the validator checks and
 * /openapi.json publishes. The envelope is added here, once: a handler's payload answers as
 * `{"success": true, ...payload}`; `RAW` or nothing leaves `ctx.body` as the handler set it.
 */
export function defineRoute<
  B extends SchemaName = never,
  Q extends SchemaName = never,
  R extends SchemaName = never,
  O extends boolean = false,
>(route: RouteDefinition<B, Q, R, O>): RouteSpec {
  const { handler, ...spec } = route;
  return {
    ...spec,
    handler: async (ctx) => {
      const payload: unknown = await handler(ctx as RouteContext<B, Q, O>);
      if (payload === undefined || payload === RAW) return;
      ctx.body = enveloped(payload as object);
    },
  };
}

/** A success answer as it goes on the wire (docs/API.md): `success: true` first, then the payload. */
export const enveloped = (payload: object): { success: true } => ({ success: true, ...payload });

export const defineRoutes = (routes: RouteSpec[]): RouteSpec[] => routes;

/**
 * Whether the request limit (daemon/http/middleware/rate-limit.ts) runs on a route, as
 * daemon/container.ts wires the guards: after authentication on every authenticated route,
 * per client address on the public `/v1/` ones; never on /health, /metrics, /openapi.json.
 */
export const isRateLimited = (spec: Pick<RouteSpec, 'auth' | 'path'>): boolean =>
  spec.auth !== 'none' || spec.path.startsWith('/v1/');
