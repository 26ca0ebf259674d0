import { Counter, Histogram } from 'prom-client';
import type { Redis } from 'ioredis';
import type { Metrics } from '../metrics.js';
import { Periodic } from '../periodic.js';

/** How often the probe pings Redis. */
export const REDIS_PROBE_INTERVAL_MS = 10_000;

/**
 * Redis health as seen from this daemon, without touching the clients' call
 * sites: a PING every 10 s timed into `keen_redis_ping_duration_seconds`, and
 * `keen_redis_errors_total{kind}` counting connection errors the client
 * reports (`connection`) and failed probes (`ping`). Request-path failures are
 * counted by the limiter (`keen_ratelimit_backend_failures_total`).
 */
export class RedisProbe {
  readonly duration: Histogram;
  readonly errors: Counter<'kind'>;
  private readonly periodic = new Periodic(() => this.ping(this.redis!));

  constructor(
    private readonly redis: Redis | null,
    metrics: Metrics,
    private readonly intervalMs = REDIS_PROBE_INTERVAL_MS,
  ) {
    const registers = [metrics.registry];
    this.duration = new Histogram({
      name: 'keen_redis_ping_duration_seconds',
      help: 'Round trip of the periodic Redis PING from this daemon (no samples without Redis).',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
    this.errors = new Counter({
      name: 'keen_redis_errors_total',
      help: 'Redis errors seen by this daemon: connection errors reported by the client, failed probe PINGs.',
      labelNames: ['kind'],
      registers,
    });
    for (const kind of ['connection', 'ping'] as const) this.errors.inc({ kind }, 0);
    redis?.on('error', () => this.errors.inc({ kind: 'connection' }));
  }

  start(): void {
    if (this.redis) this.periodic.start(this.intervalMs, { immediately: true });
  }

  /** One PING now (also what the timer calls). */
  tick(): Promise<void> {
    return this.redis ? this.periodic.run() : Promise.resolve();
  }

  private ping(redis: Redis): Promise<void> {
    const end = this.duration.startTimer();
    return redis
      .ping()
      .then(() => void end())
      .catch(() => void this.errors.inc({ kind: 'ping' }));
  }

  stop(): Promise<void> {
    return this.periodic.stop();
  }
}
