import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** prom-client default metrics the daemon does not export (see the constructor). */
export const DEFAULT_METRICS_DROPPED = ['keen_nodejs_active_handles_total', 'keen_nodejs_active_requests_total', 'keen_nodejs_active_resources_total'] as const;

/**
 * The daemon's Prometheus registry. One per daemon (never the global default
 * registry), so several daemons can live in one test process. Label values are
 * always from small fixed sets: route templates, methods, status codes, outcomes;
 * never a user id, an email or a key.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;
  readonly dbErrors: Counter<'backend'>;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? true) {
      collectDefaultMetrics({ register: this.registry, prefix: 'keen_' });
      // prom-client also exports `nodejs_active_{handles,requests,resources}_total`: gauges with a
      // counter's suffix, which `promtool check metrics` rejects. The per-type gauges beside them
      // (`keen_nodejs_active_handles{type}`, ...) carry the same numbers: the total is their `sum`.
      for (const name of DEFAULT_METRICS_DROPPED) this.registry.removeSingleMetric(name);
    }
    this.httpRequests = new Counter({
      name: 'keen_http_requests_total',
      help: 'HTTP requests answered, by route template, method and status code.',
      labelNames: ['method', 'route', 'status'],
      registers: [this.registry],
    });
    this.httpDuration = new Histogram({
      name: 'keen_http_request_duration_seconds',
      help: 'Time from request arrival to response, by route template, method and status code.',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [this.registry],
    });
    this.dbErrors = new Counter({
      name: 'keen_database_errors_total',
      help: 'Database operations that failed because the database was unreachable or busy.',
      labelNames: ['backend'],
      registers: [this.registry],
    });
  }

  counter<L extends string>(name: string, help: string, labelNames: L[] = []): Counter<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  histogram<L extends string>(name: string, help: string, labelNames: L[], buckets: number[]): Histogram<L> {
    return new Histogram({ name, help, labelNames, buckets, registers: [this.registry] });
  }
}
