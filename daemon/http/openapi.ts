import type { SchemaDoc } from '../schemas.js';
import { ERROR_CODES } from '../errors.js';
import type { RouteSpec } from './routes.js';

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
export function buildOpenApi(routes: RouteSpec[], schemas: Map<string, SchemaDoc>, version: string): Record<string, unknown> {
  const components: Record<string, unknown> = {};
  for (const [name, doc] of schemas) {
    if (!doc.$id.startsWith(API_PREFIX)) continue;
    components[name] = toComponent(doc);
  }
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const p = r.path.replace(/:([A-Za-z_]+)/g, '{$1}');
    const params = [...r.path.matchAll(/:([A-Za-z_]+)/g)].map((m) => ({
      name: m[1],
      in: 'path',
      required: true,
      schema: { type: 'string' },
    }));
    if (r.query) {
      const q = schemas.get(r.query) as { properties?: Record<string, unknown>; required?: string[] } | undefined;
      for (const [name, schema] of Object.entries(q?.properties ?? {})) {
        params.push({ name, in: 'query', required: q?.required?.includes(name) ?? false, schema: toComponent(schema) as never });
      }
    }
    const responses: Record<string, unknown> = {
      [String(r.response.status)]: {
        description: r.response.description ?? 'Success',
        ...(r.response.schema
          ? { content: { [r.response.contentType ?? 'application/json']: { schema: { $ref: `#/components/schemas/${r.response.schema}` } } } }
          : r.response.contentType
            ? { content: { [r.response.contentType]: { schema: { type: 'string' } } } }
            : {}),
      },
    };
    const codes = new Set<string>(['INTERNAL', ...(r.errors ?? [])]);
    if (r.body) codes.add('INVALID_JSON').add('INVALID_FIELD').add('PAYLOAD_TOO_LARGE');
    if (r.auth !== 'none') codes.add('MISSING_TOKEN').add('INVALID_TOKEN').add('RATE_LIMITED');
    if (r.scope) codes.add('INSUFFICIENT_SCOPE');
    if (r.policy) codes.add('FORBIDDEN');
    const byStatus = new Map<number, string[]>();
    for (const code of codes) {
      const entry = ERROR_CODES[code as keyof typeof ERROR_CODES];
      if (!entry) continue;
      byStatus.set(entry[1], [...(byStatus.get(entry[1]) ?? []), code]);
    }
    for (const [status, list] of [...byStatus].sort((a, b) => a[0] - b[0])) {
      responses[String(status)] = {
        description: `Error: ${list.join(', ')}`,
        content: { 'application/json': { schema: { $ref: '#/components/schemas/ErrorEnvelope' } } },
      };
    }
    paths[p] ??= {};
    paths[p]![r.method.toLowerCase()] = {
      operationId: operationId(r),
      summary: r.summary,
      tags: [r.tag],
      ...(params.length ? { parameters: params } : {}),
      ...(r.auth === 'none' ? { security: [] } : r.auth === 'bearer' ? { security: [{ bearerAuth: [] }] } : {}),
      ...(r.body
        ? { requestBody: { required: r.bodyOptional !== true, content: { 'application/json': { schema: { $ref: `#/components/schemas/${r.body}` } } } } }
        : {}),
      responses,
    };
  }
  // Query-string schemas are expanded into `parameters` above; as components nothing
  // would reference them (the lint's no-unused-components). Kept when something does.
  const queryNames = new Set([...routes.flatMap((r) => (r.query ? [r.query] : [])), ...Object.keys(components).filter((n) => n.endsWith('Query'))]);
  const referenced = JSON.stringify({ paths, components });
  for (const name of queryNames) {
    if (!referenced.includes(`"#/components/schemas/${name}"`)) delete components[name];
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'keen-gateway API',
      version,
      description: 'The gateway in front of keen agents: authentication, credits, limits, sessions and the live stream.',
      license: { name: 'Proprietary', identifier: 'UNLICENSED' },
    },
    servers: [{ url: '/' }],
    security: [{ bearerAuth: [] }, { apiKeyAuth: [] }],
    tags: [...new Set(routes.map((r) => r.tag))].sort().map((name) => ({ name, description: `${name} endpoints` })),
    paths,
    components: {
      schemas: components,
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

function operationId(r: RouteSpec): string {
  const words = r.path
    .replace(/^\/v1\//, '/')
    .split('/')
    .filter(Boolean)
    .map((w) => (w.startsWith(':') ? 'By' + cap(w.slice(1)) : cap(w.replace(/[^A-Za-z0-9]+(.)/g, (_, c: string) => c.toUpperCase()))));
  return r.method.toLowerCase() + words.join('');
}

const cap = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);
