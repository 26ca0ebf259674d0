import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import { createRedis, type RedisLogger } from '../redis.js';
import type { BusEnvelope, EventBus } from './bus.js';

export interface RedisEventBusDeps {
  /** The daemon's command connection: publishes go through it. */
  redis: Redis;
  /** Where the dedicated subscriber connection goes (a connection in subscribe mode can do nothing else). */
  url: string;
  /** `redis.key_prefix`: the channel is `${prefix}events`, so test runs and deployments sharing a Redis stay apart. */
  prefix: string;
  logger: RedisLogger;
}

/** What travels on the channel: the envelope and which bus sent it. */
interface WireMessage {
  o: string;
  e: BusEnvelope;
}

/**
 * The event bus across daemons: Redis pub/sub on one channel, one subscriber
 * connection per daemon. Local listeners get an event at once, without the
 * round trip (and even while Redis is down); messages this bus sent itself
 * are ignored when they come back. Pub/sub is at-most-once: a message lost
 * in an outage is still in the database, and the stream fills the gap from
 * there when the next event shows it.
 */
export class RedisEventBus implements EventBus {
  private readonly emitter = new EventEmitter();
  private readonly origin = randomBytes(8).toString('hex');
  private readonly channel: string;
  private readonly subscriber: Redis;
  private closed = false;

  constructor(private readonly deps: RedisEventBusDeps) {
    this.emitter.setMaxListeners(0);
    this.channel = `${deps.prefix}events`;
    // No command timeout: a subscriber waits for messages indefinitely.
    this.subscriber = createRedis(deps.url, deps.logger, {
      commandTimeoutMs: 0,
      connectionName: 'keen-gateway:events',
    });
    this.subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.channel) this.onMessage(message);
    });
    // Subscribe on every (re)connect; ioredis would also resubscribe, and SUBSCRIBE is idempotent.
    this.subscriber.on('ready', () => void this.listen());
    if (this.subscriber.status === 'ready') void this.listen();
  }

  private async listen(): Promise<void> {
    if (this.closed) return;
    try {
      await this.subscriber.subscribe(this.channel);
    } catch (err) {
      this.deps.logger.warn(
        { err: { message: (err as Error).message } },
        'subscribing to the event channel failed; retrying on reconnect',
      );
    }
  }

  private onMessage(message: string): void {
    let wire: WireMessage;
    try {
      wire = JSON.parse(message) as WireMessage;
    } catch {
      return;
    }
    if (wire.o === this.origin || !wire.e?.event) return;
    this.emitter.emit('event', wire.e);
  }

  async publish(envelope: BusEnvelope): Promise<void> {
    this.emitter.emit('event', envelope);
    const wire: WireMessage = { o: this.origin, e: envelope };
    await this.deps.redis.publish(this.channel, JSON.stringify(wire));
  }

  subscribe(listener: (envelope: BusEnvelope) => void): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.emitter.removeAllListeners();
    await this.subscriber.quit().catch(() => this.subscriber.disconnect());
  }
}
