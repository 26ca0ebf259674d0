import { randomBytes } from 'node:crypto';
import net from 'node:net';
import type { Redis } from 'ioredis';
import type { ManualClock } from '../../../daemon/clock.js';
import { MemoryRateLimiter } from '../../../daemon/limits/memory.js';
import { RedisRateLimiter } from '../../../daemon/limits/redis.js';
import type { BatchRateLimiter } from '../../../daemon/limits/types.js';
import { createRedis, type RedisLogger } from '../../../daemon/redis.js';
import { describeShared, type SharedBackend } from '../../helpers/backends.js';
import { TEST_REDIS_URL } from '../../helpers/env.js';

/** Every key this run writes starts with this, so runs never collide and cleanup is exact. */
export const RUN_PREFIX = `keen:test:${randomBytes(6).toString('hex')}:`;

let counter = 0;
/** A fresh key prefix for one test. */
export function freshPrefix(): string {
  counter += 1;
  return `${RUN_PREFIX}${counter}:`;
}

/** Collects what createRedis logs. */
export class LogSpy implements RedisLogger {
  readonly warnings: string[] = [];
  readonly infos: string[] = [];
  warn(_obj: object, msg: string): void {
    this.warnings.push(msg);
  }
  info(_obj: object, msg: string): void {
    this.infos.push(msg);
  }
}

/** A client on the test Redis (KEEN_TEST_REDIS_URL). */
export function testRedis(): Redis {
  if (!TEST_REDIS_URL) throw new Error('KEEN_TEST_REDIS_URL is not set');
  return createRedis(TEST_REDIS_URL, new LogSpy(), { commandTimeoutMs: 10_000 });
}

/** Deletes every key under `prefix`. */
export async function deleteKeys(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    if (keys.length > 0) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
}

export interface LimiterOptions {
  /** Manual time; null for real time (the system clock, or Redis server time). */
  clock: ManualClock | null;
  buckets?: number;
}

/**
 * Builds limiters of one backend for a suite; one Redis connection per suite,
 * a fresh key prefix per limiter, all keys of the run deleted at the end.
 */
export function limiterFactory(backend: SharedBackend): (options: LimiterOptions) => BatchRateLimiter {
  let redis: Redis | null = null;
  if (backend === 'redis') {
    before(async () => {
      redis = testRedis();
      await ready(redis);
    });
    after(async () => {
      await deleteKeys(redis!, RUN_PREFIX);
      redis!.disconnect();
    });
  }
  return ({ clock, buckets }) =>
    backend === 'memory'
      ? new MemoryRateLimiter({ clock: clock ?? undefined, buckets })
      : new RedisRateLimiter({ redis: redis!, prefix: freshPrefix(), clock: clock ?? undefined, buckets });
}

/** Waits until a client is connected (without relying on the offline queue, which is off). */
export async function ready(redis: Redis): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise((resolve) => redis.once('ready', resolve));
}

/** Polls `probe` until it returns true; fails after `attempts` tries. Not a timing assertion: a bound on waiting. */
export async function eventually(probe: () => Promise<boolean>, attempts = 200, everyMs = 50): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    if (await probe()) return;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
  throw new Error('condition never became true');
}

/**
 * Suites that only mean something on Redis: run them when KEEN_TEST_REDIS_URL
 * is set; otherwise let describeShared report the skip loudly (a failure under CI).
 */
export function describeRedis(title: string, body: () => void): void {
  if (TEST_REDIS_URL) describe(`${title} [redis]`, body);
  else describeShared(title, () => undefined);
}

/** A TCP proxy to the test Redis that can be stopped and restarted on the same port, to simulate an outage. */
export class TcpProxy {
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  async start(): Promise<number> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.targetPort, this.targetHost);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as net.AddressInfo).port;
    return this.port;
  }

  /** Stops listening and cuts every open connection. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** A small seeded PRNG (mulberry32), so a failing random sequence can be replayed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
