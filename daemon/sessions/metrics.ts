import { Gauge, type Counter, type Histogram } from 'prom-client';
import type { Metrics } from '../metrics.js';

/** Agent runs: running now, ended by final status, duration, and lines the gateway refused to trust. */
export class SessionMetrics {
  readonly running: Gauge;
  readonly ended: Counter<'status'>;
  readonly duration: Histogram<'status'>;
  readonly invalidLines: Counter;
  readonly executes: Counter<'outcome'>;

  constructor(metrics: Metrics) {
    this.running = new Gauge({
      name: 'keen_sessions_running',
      help: 'Agent sessions running on this daemon.',
      registers: [metrics.registry],
    });
    this.ended = metrics.counter(
      'keen_sessions_ended_total',
      'Agent sessions that reached a final status, by status.',
      ['status'],
    );
    this.duration = metrics.histogram(
      'keen_session_duration_seconds',
      'Wall-clock time of agent sessions, by final status.',
      ['status'],
      [1, 5, 15, 60, 300, 900, 1800, 3600, 7200],
    );
    this.invalidLines = metrics.counter(
      'keen_agent_invalid_lines_total',
      'Agent stdout lines that were not valid protocol messages (logged, not trusted).',
    );
    this.executes = metrics.counter(
      'keen_executes_total',
      'Execute requests by outcome (accepted, insufficient_credits, budget_exceeded, concurrency_limit, invalid).',
      ['outcome'],
    );
  }
}
