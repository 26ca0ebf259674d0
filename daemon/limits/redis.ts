import type { Redis } from 'ioredis';
import type { Clock } from '../clock.js';
import { RateLimitBackendError } from './errors.js';
import { CONSUME_SCRIPT, PEEK_SCRIPT, REFUND_SCRIPT } from './redis-scripts.js';
import type { BatchDecision, BatchRateLimiter, BatchRequest, RateLimitDecision } from './types.js';
import { DEFAULT_BUCKETS, assertDistinctKeys, validateBuckets, validateRequest } from './window.js';

export interface RedisRateLimiterOptions {
  /** A client from `createRedis`; the limiter borrows it and never closes it. */
  redis: Redis;
  /** Prepended to every key (default `keen:rl:`). */
  prefix?: string;
  /** Sub-buckets per window (default 60); must be the same on every daemon. */
  buckets?: number;
  /**
   * For deterministic tests only: when given, `now` is sent to the script instead
   * of using Redis server time. Production leaves it unset, so that every daemon
   * decides on one clock (Redis's) whatever its own clock says.
   */
  clock?: Clock;
}

type ScriptFn = (numKeys: number, ...args: (string | number)[]) => Promise<number[]>;

// ioredis adds a method per defineCommand; these names are ours alone.
const CONSUME = 'keenRateLimitConsume';
const PEEK = 'keenRateLimitPeek';
const REFUND = 'keenRateLimitRefund';

/**
 * The shared sliding-window limiter: the same decisions as MemoryRateLimiter,
 * held in Redis so several daemons share one budget. Every decision (one key or
 * a batch) is one EVALSHA of an atomic Lua script: one round trip, no race.
 * While Redis is unreachable every call rejects with RateLimitBackendError at
 * once (the client has no offline queue); ResilientRateLimiter decides what that
 * means for the request.
 */
export class RedisRateLimiter implements BatchRateLimiter {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly buckets: number;
  private readonly clock: Clock | undefined;
  private readonly consumeScript: ScriptFn;
  private readonly peekScript: ScriptFn;
  private readonly refundScript: ScriptFn;

  constructor(options: RedisRateLimiterOptions) {
    this.redis = options.redis;
    this.prefix = options.prefix ?? 'keen:rl:';
    this.buckets = validateBuckets(options.buckets ?? DEFAULT_BUCKETS);
    this.clock = options.clock;
    // defineCommand sends EVALSHA and falls back to EVAL when Redis lost its
    // script cache (a restart), so recovery needs nothing from us.
    this.redis.defineCommand(CONSUME, { lua: CONSUME_SCRIPT });
    this.redis.defineCommand(PEEK, { lua: PEEK_SCRIPT });
    this.redis.defineCommand(REFUND, { lua: REFUND_SCRIPT });
    const commands = this.redis as unknown as Record<string, ScriptFn>;
    this.consumeScript = commands[CONSUME]!.bind(this.redis);
    this.peekScript = commands[PEEK]!.bind(this.redis);
    this.refundScript = commands[REFUND]!.bind(this.redis);
  }

  /** The Redis key holding `key`'s buckets. */
  redisKey(key: string): string {
    return this.prefix + key;
  }

  async consume(key: string, limit: number, windowMs: number, cost = 1): Promise<RateLimitDecision> {
    return (await this.run(this.consumeScript, [{ key, limit, windowMs, cost }])).decisions[0]!;
  }

  async peek(key: string, limit: number, windowMs: number, cost = 1): Promise<RateLimitDecision> {
    return (await this.run(this.peekScript, [{ key, limit, windowMs, cost }])).decisions[0]!;
  }

  /** All-or-nothing across keys in one script. Standalone Redis only: on a Cluster the keys would need one hash slot. */
  async consumeAll(requests: BatchRequest[]): Promise<BatchDecision> {
    return this.run(this.consumeScript, requests);
  }

  async reset(key: string): Promise<void> {
    try {
      await this.redis.del(this.redisKey(key));
    } catch (err) {
      throw new RateLimitBackendError('rate limit backend failed to reset a key', err);
    }
  }

  async refund(key: string, _windowMs: number, cost = 1): Promise<void> {
    try {
      await this.refundScript(1, this.redisKey(key), cost);
    } catch (err) {
      throw new RateLimitBackendError('rate limit backend failed to refund', err);
    }
  }

  /** Nothing to release: the client belongs to whoever created it. */
  async close(): Promise<void> {}

  private async run(fn: ScriptFn, requests: BatchRequest[]): Promise<BatchDecision> {
    for (const r of requests) validateRequest(r.key, r.limit, r.windowMs, r.cost ?? 1);
    assertDistinctKeys(requests.map((r) => r.key));
    if (requests.length === 0) return { allowed: true, decisions: [] };
    const now = this.clock ? String(Math.floor(this.clock.now())) : '';
    const args: (string | number)[] = [...requests.map((r) => this.redisKey(r.key)), now, this.buckets];
    for (const r of requests) args.push(r.limit, r.windowMs, r.cost ?? 1);
    let reply: number[];
    try {
      reply = await fn(requests.length, ...args);
    } catch (err) {
      throw new RateLimitBackendError('rate limit backend failed', err);
    }
    const decisions = requests.map((r, i): RateLimitDecision => {
      const at = 2 + i * 4;
      return {
        allowed: reply[at] === 1,
        limit: r.limit,
        remaining: Number(reply[at + 1]),
        resetMs: Number(reply[at + 2]),
        retryAfterMs: Number(reply[at + 3]),
      };
    });
    return { allowed: reply[0] === 1, decisions };
  }
}
