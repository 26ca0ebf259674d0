import type { Redis } from 'ioredis';
import type { Clock } from '../clock.js';
import { RateLimitBackendError } from './errors.js';
import { CONSUME_SCRIPT, PEEK_SCRIPT, REFUND_SCRIPT, RESET_SCRIPT } from './redis-scripts.js';
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
  /**
   * How long a call waits for Redis before it fails (RateLimitBackendError, and
   * the caller's failure policy answers). Default and upper bound: the client's
   * `commandTimeout` (1000 ms from `createRedis`); 1000 ms when it has none.
   */
  timeoutMs?: number;
}

type ScriptFn = (numKeys: number, ...args: (string | number)[]) => Promise<number[]>;

// ioredis adds a method per defineCommand; these names are ours alone.
const CONSUME = 'keenRateLimitConsume';
const PEEK = 'keenRateLimitPeek';
const REFUND = 'keenRateLimitRefund';
const RESET = 'keenRateLimitReset';

/**
 * The share of a call's time budget within which Redis must run its script
 * (by Redis's clock). The rest is for the reply to come back: a script that
 * runs in time is answered before the caller gives up, unless the reply takes
 * longer than a quarter of the budget to reach it.
 */
const RUN_WITHIN = 0.75;

/**
 * The shared sliding-window limiter: the same decisions as MemoryRateLimiter,
 * held in Redis so several daemons share one budget. Every decision (one key or
 * a batch) is one EVALSHA of an atomic Lua script: one round trip, no race.
 * While Redis is unreachable every call rejects with RateLimitBackendError at
 * once (the client has no offline queue); ResilientRateLimiter decides what that
 * means for the request.
 *
 * A call that got no answer within `timeoutMs` fails the same way. Its command
 * may still reach Redis later (written to a link that was partitioned, or resent
 * by ioredis after a reconnect), so every script carries a deadline, in Redis's
 * clock, by which it must run: past it, it writes nothing. A call that failed
 * (and was let through uncounted by fail_open) is therefore never counted later.
 * Redis's clock need not agree with ours: each reply carries Redis's time, from
 * which the limiter keeps a lower bound of the offset between the clocks.
 */
export class RedisRateLimiter implements BatchRateLimiter {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly buckets: number;
  private readonly clock: Clock | undefined;
  private readonly consumeScript: ScriptFn;
  private readonly peekScript: ScriptFn;
  private readonly refundScript: ScriptFn;
  private readonly resetScript: ScriptFn;
  private readonly timeoutMs: number;
  /** Redis's clock minus ours (ms), a lower bound learnt from replies; null before the first one. */
  private clockOffsetMs: number | null = null;

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
    this.redis.defineCommand(RESET, { lua: RESET_SCRIPT });
    const commands = this.redis as unknown as Record<string, ScriptFn>;
    this.consumeScript = commands[CONSUME]!.bind(this.redis);
    this.peekScript = commands[PEEK]!.bind(this.redis);
    this.refundScript = commands[REFUND]!.bind(this.redis);
    this.resetScript = commands[RESET]!.bind(this.redis);
    const clientTimeout = this.redis.options?.commandTimeout;
    const limit = typeof clientTimeout === 'number' && clientTimeout > 0 ? clientTimeout : Infinity;
    const wanted = options.timeoutMs ?? (limit === Infinity ? 1000 : limit);
    if (!(wanted > 0)) throw new RangeError('timeoutMs must be positive');
    this.timeoutMs = Math.min(wanted, limit);
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
    await this.withDeadline('reset a key', (deadline) => this.resetScript(1, this.redisKey(key), deadline));
  }

  async refund(key: string, _windowMs: number, cost = 1): Promise<void> {
    await this.withDeadline('refund', (deadline) => this.refundScript(1, this.redisKey(key), cost, deadline));
  }

  /** Nothing to release: the client belongs to whoever created it. */
  async close(): Promise<void> {}

  private async run(fn: ScriptFn, requests: BatchRequest[]): Promise<BatchDecision> {
    for (const r of requests) validateRequest(r.key, r.limit, r.windowMs, r.cost ?? 1);
    assertDistinctKeys(requests.map((r) => r.key));
    if (requests.length === 0) return { allowed: true, decisions: [] };
    const now = this.clock ? String(Math.floor(this.clock.now())) : '';
    const keys = requests.map((r) => this.redisKey(r.key));
    const perKey: number[] = [];
    for (const r of requests) perKey.push(r.limit, r.windowMs, r.cost ?? 1);
    const reply = await this.withDeadline('decide', (deadline) =>
      fn(requests.length, ...keys, now, this.buckets, deadline, ...perKey),
    );
    const decisions = requests.map((r, i): RateLimitDecision => {
      const at = 3 + i * 4;
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

  /**
   * Sends a script with the deadline by which Redis must run it (ARGV `deadline`)
   * and waits for its reply at most `timeoutMs`. Every failure is a
   * RateLimitBackendError. A reply saying the deadline had passed, received
   * while we still wait, means our estimate of Redis's clock was off (or there
   * was none yet): learn from it and send once more within the same budget.
   */
  private async withDeadline(what: string, send: (deadline: string) => Promise<number[]>): Promise<number[]> {
    const start = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new RateLimitBackendError(
              `rate limit backend failed to ${what}`,
              new Error(`Command timed out: no answer from Redis within ${this.timeoutMs} ms`),
            ),
          ),
        this.timeoutMs,
      );
    });
    try {
      for (let attempt = 0; ; attempt++) {
        const offset = this.clockOffsetMs;
        const deadline = Math.floor(start + (offset ?? 0) + this.timeoutMs * RUN_WITHIN);
        const sentAt = Date.now();
        const pending = send(String(deadline)).catch((err: unknown) => {
          throw new RateLimitBackendError(`rate limit backend failed to ${what}`, err);
        });
        // Whichever loses the race must not become an unhandled rejection.
        pending.catch(() => undefined);
        const reply = await Promise.race([pending, gaveUp]);
        this.learnClock(sentAt, Date.now(), Number(reply[1]));
        if (reply[0] !== -1) return reply;
        if (attempt > 0 || this.clockOffsetMs === offset) {
          throw new RateLimitBackendError(
            `rate limit backend failed to ${what}`,
            new Error('Command timed out: Redis ran the command after its deadline and changed nothing'),
          );
        }
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Redis's time `redisNow` was read between `sentAt` and `receivedAt` (our
   * clock), so the offset lies in [redisNow - receivedAt, redisNow - sentAt].
   * Keeps the lower end (deadlines err early, never late): raised by a tighter
   * sample, replaced when a sample shows the clocks moved the other way.
   */
  private learnClock(sentAt: number, receivedAt: number, redisNow: number): void {
    if (!Number.isFinite(redisNow)) return;
    // Whole milliseconds on both sides: widen by one.
    const lower = redisNow - receivedAt - 1;
    const upper = redisNow - sentAt + 1;
    const current = this.clockOffsetMs;
    if (current === null || lower > current || upper < current) this.clockOffsetMs = lower;
  }
}
