import { Gauge } from 'prom-client';
import type { Clock } from '../clock.js';
import type { Metrics } from '../metrics.js';
import type { OperationsReads } from '../storage/repos/operations.js';

/**
 * `keen_credit_reservations_expired_open`: open reservations whose lease ran
 * out more than `graceMs` ago, read at scrape time. The reaper settles an
 * expired lease within one pass (15 s by default), so a value that stays above
 * zero means no daemon is reaping: credits are held that nobody will release.
 */
export function registerExpiredReservationsGauge(options: {
  metrics: Metrics;
  reads: OperationsReads;
  clock: Clock;
  graceMs?: number;
}): Gauge {
  const { reads, clock } = options;
  const graceMs = options.graceMs ?? 60_000;
  return new Gauge({
    name: 'keen_credit_reservations_expired_open',
    help: 'Open credit reservations whose lease expired more than a minute ago (all daemons; should be 0: the reaper settles them).',
    registers: [options.metrics.registry],
    async collect() {
      try {
        this.set(await reads.countExpiredOpenReservations(clock.now() - graceMs));
      } catch {
        // A scrape must not fail because the database is briefly away; the last value stays.
      }
    },
  });
}
