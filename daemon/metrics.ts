import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

type HttpLabels = Readonly<Record<'method' | 'route' | 'status', string>>;

/** prom-client default metrics the daemon does not export (see the constructor). */
export const DEFAULT_METRICS_DROPPED = [
  'keen_nodejs_active_handles_total',
  'keen_nodejs_active_requests_total',
  'keen_nodejs_active_resources_total',
] as const;

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
  /**
   * Per route, method and status: the label object (made once) and the requests counted since the
   * counter was last read. prom-client hashes the labels and copies its series list on every `inc`;
   * the count is added to `keen_http_requests_total` when it is read (its `collect`), so a scrape
   * sees every request answered before it.
   */
  private readonly requestSeries = new Map<string, { labels: HttpLabels; pending: number }>();

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? true) {
      collectDefaultMetrics({ register: this.registry, prefix: 'keen_' });
      // prom-client also exports `nodejs_active_{handles,requests,resources}_total`: gauges with a
      // counter's suffix, which `promtool check metrics` rejects. The per-type gauges beside them
      // (`keen_nodejs_active_handles{type}`, ...) carry the same numbers: the total is their `sum`.
      for (const name of DEFAULT_METRICS_DROPPED) this.registry.removeSingleMetric(name);
    }
    const series = this.requestSeries;
    this.httpRequests = new Counter({
      name: 'keen_http_requests_total',
      help: 'HTTP requests answered, by route template, method and status code.',
      labelNames: ['method', 'route', 'status'],
      registers: [this.registry],
      collect() {
        for (const s of series.values()) {
          if (s.pending === 0) continue;
          this.inc(s.labels, s.pending);
          s.pending = 0;
        }
      },
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

  /** One answered request, for `keen_http_requests_total` and `keen_http_request_duration_seconds`. */
  observeRequest(method: string, route: string, status: number, seconds: number): void {
    const key = `${method} ${status} ${route}`;
    let s = this.requestSeries.get(key);
    if (s === undefined) {
      s = { labels: Object.freeze({ method, route, status: String(status) }), pending: 0 };
      this.requestSeries.set(key, s);
    }
    s.pending += 1;
    this.httpDuration.observe(s.labels, seconds);
  }

  counter<L extends string>(name: string, help: string, labelNames: L[] = []): Counter<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  histogram<L extends string>(name: string, help: string, labelNames: L[], buckets: number[]): Histogram<L> {
    return new Histogram({ name, help, labelNames, buckets, registers: [this.registry] });
  }
}
