import type { SchemaDoc } from '../schemas.js';
import { WEBHOOK_EVENTS, WEBHOOK_EVENT_TYPES } from '../webhooks/events.js';
import { ERROR_CODES } from '../errors.js';
import { isRateLimited, type RouteSpec } from './routes.js';

const API_PREFIX = 'https://keen.invalid/schemas/api/';

/** Rewrites `$ref: "Name.json"` (relative to schemas/api/) to `#/components/schemas/Name`. */
function toComponent(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(toComponent);
  if (!node || typeof node !== 'object') return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === '$id' || k === '$schema' || k === 'x-secret') continue;
    if (k === '$ref' && typeof v === 'string') {
      const m = /^(?:\.\/)?([A-Za-z0-9]+)\.json(#.*)?$/.exec(v.replace(API_PREFIX, ''));
      out[k] = m ? `#/components/schemas/${m[1]}${m[2] ? m[2].replace('#', '/') : ''}` : v;
      continue;
    }
    out[k] = toComponent(v);
  }
  return out;
}

/** OpenAPI 3.1 for the routes, built from the same schemas ajv validates with. */
export function buildOpenApi(
  routes: RouteSpec[],
  schemas: Map<string, SchemaDoc>,
  version: string,
): Record<string, unknown> {
  const components: Record<string, unknown> = {};
  for (const [name, doc] of schemas) {
    if (!doc.$id.startsWith(API_PREFIX)) continue;
    components[name] = toComponent(doc);
  }
  const paths: Record<string, Record<string, unknown>> = {};
  const errorResponses: Record<string, unknown> = {};
  for (const r of routes) {
    const p = r.path.replace(/:([A-Za-z_]+)/g, '{$1}');
    const params: Array<Record<string, unknown>> = [...r.path.matchAll(/:([A-Za-z_]+)/g)].map((m) => ({
      name: m[1],
      in: 'path',
      required: true,
      schema: { type: 'string' },
    }));
    if (r.query) {
      const q = schemas.get(r.query) as { properties?: Record<string, unknown>; required?: string[] } | undefined;
      for (const [name, schema] of Object.entries(q?.properties ?? {})) {
        params.push({
          name,
          in: 'query',
          required: q?.required?.includes(name) ?? false,
          schema: toComponent(schema) as never,
        });
      }
    }
    if (r.idempotent) {
      params.push({
        name: 'Idempotency-Key',
        in: 'header',
        required: false,
        description:
          'Makes the request safe to retry (docs/API.md, "Idempotency"): 1 to 255 printable ASCII characters, e.g. a UUID, scoped per user and kept 24 h. ' +
          'The same key with the same body answers the stored response (`Idempotent-Replayed: true`); with another body, 409 IDEMPOTENCY_KEY_REUSED.',
        schema: { type: 'string', minLength: 1, maxLength: 255, pattern: '^[ -~]+$' },
      });
    }
    const limited = isRateLimited(r);
    const success: Record<string, unknown> = {
      description: r.response.description ?? 'Success',
      headers: {
        ...commonHeaders(),
        ...(limited ? rateLimitHeaders(true) : {}),
        ...(r.idempotent ? { 'Idempotent-Replayed': { $ref: '#/components/headers/Idempotent-Replayed' } } : {}),
        ...r.response.headers,
      },
    };
    const content: Record<string, unknown> = {};
    if (r.response.schema)
      content[r.response.contentType ?? 'application/json'] = {
        schema: { $ref: `#/components/schemas/${r.response.schema}` },
      };
    else if (r.response.contentType) content[r.response.contentType] = { schema: { type: 'string' } };
    for (const type of r.response.otherContentTypes ?? []) content[type] = { schema: { type: 'string' } };
    if (Object.keys(content).length > 0) success.content = content;
    const responses: Record<string, unknown> = { [String(r.response.status)]: success };
    const byStatus = new Map<number, string[]>();
    for (const code of errorCodesOf(r)) {
      const entry = ERROR_CODES[code as keyof typeof ERROR_CODES];
      if (!entry) continue;
      byStatus.set(entry[1], [...(byStatus.get(entry[1]) ?? []), code]);
    }
    for (const [status, list] of [...byStatus].sort((a, b) => a[0] - b[0])) {
      // One shared error response per status and header set (components/responses); the
      // operation's own description names the codes it can answer with.
      const name = errorResponse(status, limited, list.includes('IDEMPOTENCY_KEY_IN_USE'), errorResponses);
      responses[String(status)] = { $ref: `#/components/responses/${name}`, description: `Error: ${list.join(', ')}` };
    }
    paths[p] ??= {};
    paths[p]![r.method.toLowerCase()] = {
      operationId: operationId(r),
      summary: r.summary,
      tags: [r.tag],
      ...(params.length ? { parameters: params } : {}),
      ...(r.auth === 'none' ? { security: [] } : r.auth === 'bearer' ? { security: [{ bearerAuth: [] }] } : {}),
      ...(r.body
        ? {
            requestBody: {
              required: r.bodyOptional !== true,
              content: { 'application/json': { schema: { $ref: `#/components/schemas/${r.body}` } } },
            },
          }
        : {}),
      responses,
    };
  }
  // Query-string schemas are expanded into `parameters` above; as components nothing
  // would reference them (the lint's no-unused-components). Kept when something does.
  const queryNames = new Set([
    ...routes.flatMap((r) => (r.query ? [r.query] : [])),
    ...Object.keys(components).filter((n) => n.endsWith('Query')),
  ]);
  const referenced = JSON.stringify({ paths, components });
  for (const name of queryNames) {
    if (!referenced.includes(`"#/components/schemas/${name}"`)) delete components[name];
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'keen-gateway API',
      version,
      description:
        'The gateway in front of keen agents: authentication, credits, limits, sessions and the live stream.',
      license: { name: 'Proprietary', identifier: 'UNLICENSED' },
    },
    servers: [{ url: '/' }],
    security: [{ bearerAuth: [] }, { apiKeyAuth: [] }],
    tags: [...new Set(routes.map((r) => r.tag))].sort().map((name) => ({ name, description: `${name} endpoints` })),
    paths,
    // What registered endpoints receive (docs/webhooks.md): one POST per event type, signed per Standard Webhooks.
    webhooks: Object.fromEntries(
      WEBHOOK_EVENT_TYPES.map((type) => [
        type,
        {
          post: {
            summary: WEBHOOK_EVENTS[type].description,
            operationId: `webhook${type.split(/[._]/).map(cap).join('')}`,
            tags: ['webhooks'],
            security: [],
            parameters: ['webhook-id', 'webhook-timestamp', 'webhook-signature'].map((name) => ({
              name,
              in: 'header',
              required: true,
              description: WEBHOOK_HEADERS[name],
              schema: { type: 'string' },
            })),
            requestBody: {
              required: true,
              content: {
                'application/json': { schema: { $ref: `#/components/schemas/${WEBHOOK_EVENTS[type].schema}` } },
              },
            },
            responses: {
              '200': { description: 'Any 2xx answer acknowledges the delivery; anything else is retried.' },
            },
          },
        },
      ]),
    ),
    components: {
      schemas: components,
      responses: Object.fromEntries(Object.entries(errorResponses).sort(([a], [b]) => a.localeCompare(b))),
      headers: HEADERS,
      securitySchemes: {
        bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
        apiKeyAuth: {
          type: 'apiKey',
          in: 'header',
          name: 'Authorization',
          description: 'The header value is `ApiKey ak_live_...`.',
        },
      },
    },
  };
}

/** Methods whose body the parser reads (daemon/http/middleware/body.ts): a body in any other media type is 415. */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Every error code a route can answer with: its own (`errors`) and the ones the middleware
 * in front of its handler can answer with, derived from its spec as daemon/http/app.ts and
 * daemon/container.ts build the chain:
 * - any route: 500 INTERNAL; 400 INVALID_FIELD (a NUL in the path or query string, the query schema);
 * - a body method (POST, PUT, PATCH, DELETE), body declared or not: the parser's 400 INVALID_JSON,
 *   413 PAYLOAD_TOO_LARGE and 415 UNSUPPORTED_MEDIA_TYPE, and 507 INSUFFICIENT_STORAGE (a write);
 * - authenticated: every 401 of the credential check;
 * - rate limited (isRateLimited): 429 RATE_LIMITED, and 503 UNAVAILABLE (a write fails closed when
 *   the limiter's backend is down; authentication reads the database);
 * - Bearer only: 403 FORBIDDEN to an API key; a scope: 403 INSUFFICIENT_SCOPE; a policy: 403 FORBIDDEN;
 * - `idempotent`: 400 INVALID_FIELD for a malformed key, 409 IDEMPOTENCY_KEY_REUSED and _IN_USE.
 */
export function errorCodesOf(r: RouteSpec): Set<string> {
  const codes = new Set<string>(['INTERNAL', 'INVALID_FIELD']);
  if (BODY_METHODS.has(r.method))
    codes.add('INVALID_JSON').add('PAYLOAD_TOO_LARGE').add('UNSUPPORTED_MEDIA_TYPE').add('INSUFFICIENT_STORAGE');
  if (r.auth !== 'none') {
    for (const c of [
      'MISSING_TOKEN',
      'INVALID_TOKEN_FORMAT',
      'INVALID_TOKEN',
      'TOKEN_EXPIRED',
      'API_KEY_EXPIRED',
      'API_KEY_REVOKED',
      'ACCOUNT_SUSPENDED',
    ])
      codes.add(c);
  }
  if (isRateLimited(r)) codes.add('RATE_LIMITED').add('UNAVAILABLE');
  if (r.auth === 'bearer') codes.add('FORBIDDEN');
  if (r.scope) codes.add('INSUFFICIENT_SCOPE');
  if (r.policy) codes.add('FORBIDDEN');
  if (r.idempotent) codes.add('IDEMPOTENCY_KEY_REUSED').add('IDEMPOTENCY_KEY_IN_USE');
  for (const c of r.errors ?? []) codes.add(c);
  return codes;
}

const int = { type: 'integer', minimum: 0 };

/**
 * Response headers (components/headers). Names and values as the middleware sets them:
 * request-context.ts (X-Request-Id), security-headers.ts, limits/headers.ts (RateLimit-*,
 * X-RateLimit-*, Retry-After), answer-once.ts and the execute route (Idempotent-Replayed).
 */
const HEADERS: Record<string, { description: string; required: boolean; schema: Record<string, unknown> }> = {
  'X-Request-Id': {
    description:
      "The request's id, also in the error envelope and the daemon's log line: a well-formed incoming X-Request-Id is kept, anything else replaced.",
    required: true,
    schema: { type: 'string', pattern: '^(req_[0-9a-hjkmnp-tv-z]{26}|[A-Za-z0-9][A-Za-z0-9._:-]{7,127})$' },
  },
  'X-Content-Type-Options': {
    description: 'Set on every response.',
    required: true,
    schema: { type: 'string', enum: ['nosniff'] },
  },
  'X-Frame-Options': {
    description: 'Set on every response.',
    required: true,
    schema: { type: 'string', enum: ['DENY'] },
  },
  'Referrer-Policy': {
    description: 'Set on every response.',
    required: true,
    schema: { type: 'string', enum: ['no-referrer'] },
  },
  'Content-Security-Policy': {
    description: 'Set on every response.',
    required: true,
    schema: { type: 'string', enum: ["default-src 'none'; frame-ancestors 'none'"] },
  },
  'Cross-Origin-Resource-Policy': {
    description: 'Set on every response.',
    required: true,
    schema: { type: 'string', enum: ['same-origin'] },
  },
  'Cache-Control': {
    description: 'Nothing the gateway answers may be cached.',
    required: true,
    schema: { type: 'string', enum: ['no-store'] },
  },
  'RateLimit-Policy': {
    description:
      'Every request budget this request was charged to (IETF ratelimit-headers draft, structured fields): `"user";q=1000;w=3600`, with `"api_key"` for an API key, `"ip"` before sign-in.',
    required: true,
    schema: { type: 'string', pattern: '^"[a-z_]+";q=[0-9]+;w=[0-9]+(, "[a-z_]+";q=[0-9]+;w=[0-9]+)*$' },
  },
  RateLimit: {
    description:
      'The most restrictive budget: units remaining (r) and seconds until it resets (t), e.g. `"user";r=998;t=3580`.',
    required: true,
    schema: { type: 'string', pattern: '^"[a-z_]+";r=[0-9]+;t=[0-9]+$' },
  },
  'X-RateLimit-Limit': {
    description: 'The most restrictive budget: requests per window.',
    required: true,
    schema: int,
  },
  'X-RateLimit-Remaining': {
    description: 'The most restrictive budget: requests left in the window.',
    required: true,
    schema: int,
  },
  'X-RateLimit-Reset': {
    description: 'The most restrictive budget: seconds until the window resets.',
    required: true,
    schema: int,
  },
  'Retry-After': {
    description:
      'Whole seconds to wait before retrying: a used-up request limit or sign-in throttle (429), a dependency down (503: 1), no storage (507: 30), an Idempotency-Key still in flight (409).',
    required: true,
    schema: int,
  },
  'Idempotent-Replayed': {
    description:
      'Present (`true`) when this answer is the stored response of an earlier request with the same Idempotency-Key: nothing was done this time.',
    required: false,
    schema: { type: 'string', enum: ['true'] },
  },
};

const ref = (name: string) => ({ $ref: `#/components/headers/${name}` });

/**
 * The name of the shared error response (the envelope and its headers) for a status, made on
 * first use: `Error429`, `Error401RateLimited` on a route under the request limit (its headers
 * optional but on a 429), `Error409Idempotent` where IDEMPOTENCY_KEY_IN_USE adds Retry-After.
 */
function errorResponse(status: number, limited: boolean, inUse: boolean, into: Record<string, unknown>): string {
  const name = `Error${status}${limited ? 'RateLimited' : ''}${inUse ? 'Idempotent' : ''}`;
  // Retry-After: always on 429, 503 and 507; on 409 only with IDEMPOTENCY_KEY_IN_USE.
  const retryAfter = status === 429 || status === 503 || status === 507 ? 'required' : inUse ? 'optional' : null;
  into[name] ??= {
    description: `Error (${status})${limited ? ' on a route under the request limit' : ''}.`,
    headers: {
      ...commonHeaders(),
      // A 429 comes from the limiter itself or after it has run; other errors may come before it
      // (authentication, the body parser) or after it (everything else).
      ...(limited ? rateLimitHeaders(status === 429) : {}),
      ...(retryAfter === 'required' ? { 'Retry-After': ref('Retry-After') } : {}),
      ...(retryAfter === 'optional' ? { 'Retry-After': { ...HEADERS['Retry-After']!, required: false } } : {}),
    },
    content: { 'application/json': { schema: { $ref: '#/components/schemas/ErrorEnvelope' } } },
  };
  return name;
}

/** The headers of every response (request id, security headers). */
const commonHeaders = () =>
  Object.fromEntries(
    [
      'X-Request-Id',
      'X-Content-Type-Options',
      'X-Frame-Options',
      'Referrer-Policy',
      'Content-Security-Policy',
      'Cross-Origin-Resource-Policy',
      'Cache-Control',
    ].map((n) => [n, ref(n)]),
  );

/** The request-limit headers: references where always present, optional copies where they may be missing. */
const rateLimitHeaders = (always: boolean) =>
  Object.fromEntries(
    ['RateLimit-Policy', 'RateLimit', 'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset'].map((n) => [
      n,
      always ? ref(n) : { ...HEADERS[n]!, required: false },
    ]),
  );

const WEBHOOK_HEADERS: Record<string, string> = {
  'webhook-id': 'The delivery id (whk_...), the same on every attempt and resend: deduplicate on it.',
  'webhook-timestamp': 'Unix seconds of this attempt; refuse ones far from your clock.',
  'webhook-signature':
    'Space-separated v1,<base64 HMAC-SHA256> signatures of "<id>.<timestamp>.<body>", one per live secret.',
};

function operationId(r: RouteSpec): string {
  const words = r.path
    .replace(/^\/v1\//, '/')
    .split('/')
    .filter(Boolean)
    .map((w) =>
      cap(
        (w.startsWith(':') ? 'By' + cap(w.slice(1)) : w).replace(/[^A-Za-z0-9]+(.)/g, (_, c: string) =>
          c.toUpperCase(),
        ),
      ),
    );
  return r.method.toLowerCase() + words.join('');
}

const cap = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);
