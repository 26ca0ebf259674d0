import { Counter, Gauge, Histogram } from 'prom-client';
import type { Metrics } from '../metrics.js';

/** The stream's Prometheus series, on the daemon's registry. Labels come from fixed sets only. */
export class StreamMetrics {
  readonly connections: Gauge;
  readonly messages: Counter<'kind'>;
  readonly slowConsumerCloses: Counter;
  readonly replaySize: Histogram;
  readonly rejectedUpgrades: Counter<'status'>;
  readonly reconciled: Counter;
  private readonly events: ReturnType<Counter<'kind'>['labels']>;
  private readonly controls: ReturnType<Counter<'kind'>['labels']>;

  constructor(metrics: Metrics) {
    const registers = [metrics.registry];
    this.connections = new Gauge({
      name: 'keen_stream_connections',
      help: 'Open stream (WebSocket) connections on this daemon.',
      registers,
    });
    this.messages = new Counter({
      name: 'keen_stream_messages_sent_total',
      help: 'Messages sent to stream clients: session events, and control messages (greeting, errors).',
      labelNames: ['kind'],
      registers,
    });
    this.slowConsumerCloses = new Counter({
      name: 'keen_stream_slow_consumer_closes_total',
      help: 'Stream connections closed with 1013 because the client fell too far behind.',
      registers,
    });
    this.replaySize = new Histogram({
      name: 'keen_stream_replay_events',
      help: 'Stored events replayed per subscription catch-up.',
      buckets: [0, 1, 10, 50, 100, 500, 1000, 5000, 10000],
      registers,
    });
    this.rejectedUpgrades = new Counter({
      name: 'keen_stream_upgrades_rejected_total',
      help: 'Stream upgrades refused before the handshake, by HTTP status.',
      labelNames: ['status'],
      registers,
    });
    this.reconciled = new Counter({
      name: 'keen_stream_reconciled_total',
      help: 'Subscriptions whose quiet live feed was behind the database and were refilled from it (events lost on the bus).',
      registers,
    });
    this.events = this.messages.labels('event');
    this.controls = this.messages.labels('control');
  }

  sent(kind: 'event' | 'control'): void {
    (kind === 'event' ? this.events : this.controls).inc();
  }
}
