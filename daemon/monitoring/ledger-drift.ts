import { Counter, Gauge } from 'prom-client';
import type { Clock } from '../clock.js';
import type { Mismatch } from '../credits/ledger.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { Periodic } from '../periodic.js';

/** Every 10 minutes: verify() reads each account under its lock, so it is not free on a big ledger. */
export const LEDGER_DRIFT_INTERVAL_MS = 10 * 60_000;
/** The first check runs this long after start, out of the way of start-up work. */
export const LEDGER_DRIFT_FIRST_DELAY_MS = 30_000;

export interface LedgerDriftOptions {
  /** The ledger's `verify()`: every account recomputed from its entries. */
  ledger: { verify(): Promise<Mismatch[]> };
  metrics: Metrics;
  clock: Clock;
  logger: Logger;
  intervalMs?: number;
  firstDelayMs?: number;
}

/**
 * Runs `ledger.verify()` on a timer and publishes how many accounts disagree
 * with their ledger (`keen_ledger_drift_accounts`). Any value above zero is a
 * bug or a hand edit of the database: the alert pages, `keen-admin credits
 * verify` names the accounts. Several daemons may each run one; the checks
 * only read.
 */
export class LedgerDriftMonitor {
  readonly driftAccounts: Gauge;
  readonly lastSuccess: Gauge;
  readonly failures: Counter;
  private readonly periodic = new Periodic(() => this.verify());

  constructor(private readonly options: LedgerDriftOptions) {
    const registers = [options.metrics.registry];
    this.driftAccounts = new Gauge({
      name: 'keen_ledger_drift_accounts',
      help: 'Credit accounts whose balance, reservations or entry chain disagree with the ledger at the last verify (0 = clean).',
      registers,
    });
    this.lastSuccess = new Gauge({
      name: 'keen_ledger_verify_last_success_timestamp_seconds',
      help: 'Unix time of the last ledger verify that completed (0 = none yet).',
      registers,
    });
    this.failures = new Counter({
      name: 'keen_ledger_verify_failures_total',
      help: 'Ledger verify passes that could not complete (database errors).',
      registers,
    });
  }

  start(): void {
    this.periodic.start(this.options.intervalMs ?? LEDGER_DRIFT_INTERVAL_MS, {
      firstDelayMs: this.options.firstDelayMs ?? LEDGER_DRIFT_FIRST_DELAY_MS,
    });
  }

  /** One verify now; resolves with the number of drifting accounts, or null when the pass failed. */
  tick(): Promise<number | null> {
    return this.periodic.run();
  }

  private verify(): Promise<number | null> {
    return this.options.ledger
      .verify()
      .then((mismatches) => {
        const accounts = new Set(mismatches.map((m) => m.userId)).size;
        this.driftAccounts.set(accounts);
        this.lastSuccess.set(Math.floor(this.options.clock.now() / 1000));
        // The user ids go to the log (operators need them), never to a label.
        if (accounts > 0)
          this.options.logger.error(
            { accounts, users: [...new Set(mismatches.map((m) => m.userId))].slice(0, 20) },
            'credit ledger drift detected',
          );
        return accounts;
      })
      .catch((err: unknown) => {
        this.failures.inc();
        this.options.logger.warn(
          { err: { message: err instanceof Error ? err.message : String(err) } },
          'ledger verify pass failed',
        );
        return null;
      });
  }

  stop(): Promise<void> {
    return this.periodic.stop();
  }
}
