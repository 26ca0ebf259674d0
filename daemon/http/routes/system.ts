import { GatewayError } from '../../errors.js';
import type { Metrics } from '../../metrics.js';
import { defineRoute, defineRoutes } from '../routes.js';

/** A dependency readiness depends on. */
export interface HealthCheck {
  name: string;
  check(): Promise<void>;
}

export function systemRoutes(deps: {
  checks: HealthCheck[];
  metrics: Metrics;
  version: string;
  /** The database's identity (gateway_meta database_id), once the daemon has started; keen-admin init compares it with the database it opened. */
  databaseId?: () => string | undefined;
  openapi: () => Record<string, unknown>;
}) {
  return defineRoutes([
    defineRoute({
      method: 'GET',
      path: '/health/live',
      summary: 'Liveness: the process answers.',
      tag: 'health',
      auth: 'none',
      response: { status: 200, schema: 'HealthResponse' },
      handler: () => {
        const databaseId = deps.databaseId?.();
        return {
          status: 'ok' as const,
          version: deps.version,
          ...(databaseId ? { database_id: databaseId } : {}),
          checks: {},
        };
      },
    }),
    defineRoute({
      method: 'GET',
      path: '/health/ready',
      summary:
        'Readiness: the database and, when configured, Redis answer, and the disks have server.min_free_disk_mb free. 503 names what failed.',
      tag: 'health',
      auth: 'none',
      response: { status: 200, schema: 'HealthResponse' },
      errors: ['UNAVAILABLE'],
      handler: async () => {
        const results = await Promise.all(
          deps.checks.map(async (c) => {
            try {
              await c.check();
              return [c.name, 'ok'] as const;
            } catch {
              return [c.name, 'fail'] as const;
            }
          }),
        );
        const checks = Object.fromEntries(results);
        const failed = results.filter(([, s]) => s === 'fail').map(([n]) => n);
        if (failed.length > 0) {
          throw new GatewayError('UNAVAILABLE', `not ready: ${failed.join(', ')} unavailable`, {
            details: { checks },
            headers: { 'Retry-After': '1' },
          });
        }
        return { status: 'ok' as const, version: deps.version, checks };
      },
    }),
    defineRoute({
      method: 'GET',
      path: '/metrics',
      summary: 'Prometheus metrics in the text exposition format.',
      tag: 'health',
      auth: 'none',
      response: { status: 200, contentType: 'text/plain; version=0.0.4' },
      handler: async (ctx) => {
        ctx.type = deps.metrics.registry.contentType;
        ctx.body = await deps.metrics.registry.metrics();
      },
    }),
    defineRoute({
      method: 'GET',
      path: '/openapi.json',
      summary: 'This API described in OpenAPI 3.1, built from schemas/.',
      tag: 'health',
      auth: 'none',
      response: { status: 200, description: 'OpenAPI 3.1 document' },
      handler: (ctx) => {
        ctx.body = deps.openapi();
      },
    }),
  ]);
}
