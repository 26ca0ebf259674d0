import { Counter, Gauge, Histogram } from 'prom-client';
import type { Redis } from 'ioredis';
import type { AuthService } from '../auth/auth-service.js';
import type { Clock } from '../clock.js';
import type { CreditLedger } from '../credits/ledger.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { isUnavailableError, type Database } from '../storage/database.js';
import type { OperationsReads } from '../storage/repos/operations.js';
import { LedgerDriftMonitor } from './ledger-drift.js';
import { RedisProbe } from './redis.js';
import { registerExpiredReservationsGauge } from './reservations.js';

export { LedgerDriftMonitor } from './ledger-drift.js';
export { RedisProbe } from './redis.js';

export interface MonitoringOptions {
  metrics: Metrics;
  /** Observed (transaction timings) and pinged; no query of its own. */
  database: Database;
  /** The counts behind `keen_credit_reservations_expired_open`. */
  reads: OperationsReads;
  ledger: Pick<CreditLedger, 'verify'>;
  auth: Pick<AuthService, 'observe'>;
  redis: Redis | null;
  clock: Clock;
  logger: Logger;
  /** How often the ledger is verified (default 10 min). */
  ledgerDriftIntervalMs?: number;
  /** Delay of the first verify after start (default 30 s). */
  ledgerDriftFirstDelayMs?: number;
}

/**
 * The operational series the domain services do not publish themselves (see
 * docs/METRICS.md): authentication outcomes, database latency and errors,
 * dependency health at scrape time, Redis round trips, ledger drift and
 * reservations stuck past their lease. Built once per daemon, in the
 * composition root, after the services it observes; started and stopped with
 * the other background jobs.
 */
export class Monitoring {
  readonly ledgerDrift: LedgerDriftMonitor;
  readonly redisProbe: RedisProbe;
  readonly authAttempts: Counter<'method' | 'outcome'>;
  readonly queryDuration: Histogram<'backend' | 'operation'>;

  constructor(options: MonitoringOptions) {
    const { metrics, database, redis } = options;
    const registers = [metrics.registry];
    const backend = database.dialect;

    this.authAttempts = new Counter({
      name: 'keen_auth_attempts_total',
      help: 'Authentications (jwt, api_key, none), sign-ins (password) and refreshes, by outcome: success or the error code, lower case.',
      labelNames: ['method', 'outcome'],
      registers,
    });
    for (const method of ['jwt', 'api_key', 'password', 'refresh'] as const)
      this.authAttempts.inc({ method, outcome: 'success' }, 0);
    // Outcomes are `success`, an ERROR_CODES key or `error`: a fixed set, never a credential.
    options.auth.observe((method, outcome) => this.authAttempts.inc({ method, outcome: outcome.toLowerCase() }));

    this.queryDuration = new Histogram({
      name: 'keen_database_query_duration_seconds',
      help: 'Duration of database transactions (lock wait included) and pings, by backend and operation.',
      labelNames: ['backend', 'operation'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    metrics.dbErrors.inc({ backend }, 0);
    const byOperation = {
      transaction: this.queryDuration.labels({ backend, operation: 'transaction' }),
      ping: this.queryDuration.labels({ backend, operation: 'ping' }),
    };
    database.observe((operation, seconds, error) => {
      byOperation[operation].observe(seconds);
      // A business refusal thrown inside a transaction rolls it back but is no database error.
      if (error !== null && isUnavailableError(error)) metrics.dbErrors.inc({ backend });
    });

    const up = new Gauge({
      name: 'keen_dependency_up',
      help: 'Whether a dependency answered a ping at scrape time (1) or not (0): database, and redis when configured.',
      labelNames: ['dependency'],
      registers,
      async collect() {
        const [db, rd] = await Promise.all([
          database.ping(1000).then(
            () => 1,
            () => 0,
          ),
          redis
            ? redis.ping().then(
                () => 1,
                () => 0,
              )
            : Promise.resolve(null),
        ]);
        this.set({ dependency: 'database' }, db);
        if (rd !== null) this.set({ dependency: 'redis' }, rd);
      },
    });
    void up;

    registerExpiredReservationsGauge({ metrics, reads: options.reads, clock: options.clock });
    this.redisProbe = new RedisProbe(redis, metrics);
    this.ledgerDrift = new LedgerDriftMonitor({
      ledger: options.ledger,
      metrics,
      clock: options.clock,
      logger: options.logger,
      ...(options.ledgerDriftIntervalMs !== undefined ? { intervalMs: options.ledgerDriftIntervalMs } : {}),
      ...(options.ledgerDriftFirstDelayMs !== undefined ? { firstDelayMs: options.ledgerDriftFirstDelayMs } : {}),
    });
  }

  start(): void {
    this.ledgerDrift.start();
    this.redisProbe.start();
  }

  async stop(): Promise<void> {
    await this.ledgerDrift.stop();
    await this.redisProbe.stop();
  }
}
