import { Counter } from 'prom-client';
import type { Metrics } from '../metrics.js';
import type { FailureMode } from './resilient.js';

/** How one policy came out of a check. `skipped`: it had room, but another policy denied the request, so nothing was taken. */
export type DecisionOutcome = 'allowed' | 'denied' | 'skipped' | 'degraded';

/** One policy's part of a check, as far as metrics care. */
export interface DecisionRecord {
  policy: string;
  outcome: DecisionOutcome;
}

/**
 * The limiter's Prometheus counters, registered on the daemon's Metrics. Build
 * it once per Metrics (in the composition root): registering a name twice on
 * one registry throws. Labels come from fixed sets (policy names, outcomes,
 * modes), never from keys.
 */
export class RateLimitMetrics {
  readonly backendFailures: Counter<'mode'>;
  readonly decisions: Counter<'policy' | 'outcome'>;
  /**
   * Decisions counted since `decisions` was last read, per policy and outcome (label object made
   * once): one per request, so they are added to the counter when it is read (a scrape), sparing
   * prom-client's label hashing and series copy on every request.
   */
  private readonly pending = new Map<string, { labels: { policy: string; outcome: DecisionOutcome }; count: number }>();

  constructor(metrics: Metrics) {
    this.backendFailures = metrics.counter(
      'keen_ratelimit_backend_failures_total',
      'Rate limit decisions the backend (Redis) could not make, by the failure mode applied.',
      ['mode'],
    );
    const pending = this.pending;
    this.decisions = new Counter({
      name: 'keen_ratelimit_decisions_total',
      help: 'Rate limit decisions by policy and outcome (allowed, denied, skipped, degraded).',
      labelNames: ['policy', 'outcome'],
      registers: [metrics.registry],
      collect() {
        for (const p of pending.values()) {
          if (p.count === 0) continue;
          this.inc(p.labels, p.count);
          p.count = 0;
        }
      },
    });
    // Export both series from the start, so an alert on their rate has a baseline.
    for (const mode of ['fail_open', 'fail_closed'] as const) this.backendFailures.inc({ mode }, 0);
  }

  /** Counts one backend failure handled with `mode`. */
  recordBackendFailure(mode: FailureMode): void {
    this.backendFailures.inc({ mode });
  }

  /** Counts one policy decision. */
  recordDecision(policy: string, outcome: DecisionOutcome): void {
    const key = `${policy} ${outcome}`;
    let p = this.pending.get(key);
    if (p === undefined) this.pending.set(key, (p = { labels: Object.freeze({ policy, outcome }), count: 0 }));
    p.count += 1;
  }

  /** Counts every policy of a check (see `decisionRecords` in policy.ts). */
  recordDecisions(records: DecisionRecord[]): void {
    for (const r of records) this.recordDecision(r.policy, r.outcome);
  }
}
