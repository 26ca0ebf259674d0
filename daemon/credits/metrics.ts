import { Gauge, type Counter } from 'prom-client';
import type { Metrics } from '../metrics.js';
import type { LedgerRepository } from '../storage/repos/ledger.js';
import { formatCredits, toMicros } from './money.js';

/**
 * Prometheus series of the credit ledger. Counters count what this daemon did;
 * the gauges read the database at scrape time, so with several daemons on one
 * store each reports the same, true, totals. No user appears in a label.
 */
export class CreditMetrics {
  readonly grantedMicros: Counter<never>;
  readonly chargedMicros: Counter<never>;
  readonly releasedMicros: Counter<never>;

  private static readonly cache = new WeakMap<Metrics, CreditMetrics>();

  /** One instance per registry: prom-client refuses to register a name twice. */
  static for(metrics: Metrics, ledger: LedgerRepository): CreditMetrics {
    let existing = CreditMetrics.cache.get(metrics);
    if (!existing) {
      existing = new CreditMetrics(metrics, ledger);
      CreditMetrics.cache.set(metrics, existing);
    }
    return existing;
  }

  private constructor(metrics: Metrics, ledger: LedgerRepository) {
    this.grantedMicros = metrics.counter('keen_credits_granted_micros_total', 'Micro-credits granted by this daemon.');
    this.chargedMicros = metrics.counter(
      'keen_credits_charged_micros_total',
      'Micro-credits charged on settlement by this daemon.',
    );
    this.releasedMicros = metrics.counter(
      'keen_credits_released_micros_total',
      'Micro-credits released (not charged) on settlement, release or expiry by this daemon.',
    );

    // Each gauge reads its own value at scrape time; prom-client awaits collect() before rendering.
    const openTotals = async (): Promise<{ n: number; total: number } | null> => {
      try {
        return await ledger.openReservationTotals();
      } catch {
        // A scrape must not fail because the database is briefly away; the last value stays.
        return null;
      }
    };
    new Gauge({
      name: 'keen_credit_reservations_open',
      help: 'Open credit reservations (all daemons), read from the database at scrape time.',
      registers: [metrics.registry],
      async collect() {
        const t = await openTotals();
        if (t) this.set(t.n);
      },
    });
    new Gauge({
      name: 'keen_credits_reserved',
      help: 'Credits held by open reservations (all daemons), read from the database at scrape time.',
      registers: [metrics.registry],
      async collect() {
        const t = await openTotals();
        if (t) this.set(formatCredits(toMicros(t.total)));
      },
    });
  }
}
