import { systemClock, type Clock } from '../clock.js';
import type { BatchDecision, BatchRateLimiter, BatchRequest, RateLimitDecision } from './types.js';
import {
  DEFAULT_BUCKETS,
  assertDistinctKeys,
  bucketLeavesAt,
  decide,
  effectiveBuckets,
  tally,
  validateBuckets,
  validateRequest,
  windowShape,
  type Tally,
} from './window.js';

export interface MemoryRateLimiterOptions {
  /** Time source (a ManualClock in tests). Default: the system clock. */
  clock?: Clock;
  /** Sub-buckets per window (default 60). Must match the Redis backend's for identical decisions. */
  buckets?: number;
  /** Expired keys are swept at most this often, on use (default 5000 ms). */
  sweepIntervalMs?: number;
}

interface Entry {
  shape: string;
  /** bucket index -> units taken in it */
  buckets: Map<number, number>;
  /** When the newest bucket has left the window: the entry is then worth nothing. */
  expiresAt: number;
}

/**
 * The in-process sliding-window limiter (the default when no Redis is
 * configured). Decisions are synchronous inside each call, so they are atomic
 * without locks. Memory stays bounded: stale buckets are dropped on every
 * decision, and a sweep on use (at most every `sweepIntervalMs`) deletes keys
 * whose window has drained; no timer keeps the process alive.
 */
export class MemoryRateLimiter implements BatchRateLimiter {
  private readonly entries = new Map<string, Entry>();
  private readonly clock: Clock;
  private readonly buckets: number;
  private readonly sweepIntervalMs: number;
  private nextSweepAt = Number.NEGATIVE_INFINITY;

  constructor(options: MemoryRateLimiterOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.buckets = validateBuckets(options.buckets ?? DEFAULT_BUCKETS);
    this.sweepIntervalMs = options.sweepIntervalMs ?? 5000;
  }

  /** Keys currently held (for tests and a metrics gauge). */
  get size(): number {
    return this.entries.size;
  }

  async consume(key: string, limit: number, windowMs: number, cost = 1): Promise<RateLimitDecision> {
    return this.run([{ key, limit, windowMs, cost }], true).decisions[0]!;
  }

  async peek(key: string, limit: number, windowMs: number, cost = 1): Promise<RateLimitDecision> {
    return this.run([{ key, limit, windowMs, cost }], false).decisions[0]!;
  }

  async consumeAll(requests: BatchRequest[]): Promise<BatchDecision> {
    return this.run(requests, true);
  }

  async reset(key: string): Promise<void> {
    this.entries.delete(key);
  }

  async refund(key: string, _windowMs: number, cost = 1): Promise<void> {
    const entry = this.entries.get(key);
    if (!entry) return;
    let left = cost;
    for (const index of [...entry.buckets.keys()].sort((a, b) => b - a)) {
      if (left <= 0) break;
      const units = entry.buckets.get(index)!;
      const back = Math.min(units, left);
      left -= back;
      if (units - back > 0) entry.buckets.set(index, units - back);
      else entry.buckets.delete(index);
    }
  }

  async close(): Promise<void> {
    this.entries.clear();
  }

  /** Deletes every key whose window has drained at `now`. */
  sweep(now = Math.floor(this.clock.now())): void {
    for (const [key, entry] of this.entries) if (entry.expiresAt <= now) this.entries.delete(key);
    this.nextSweepAt = now + this.sweepIntervalMs;
  }

  private run(requests: BatchRequest[], take: boolean): BatchDecision {
    for (const r of requests) validateRequest(r.key, r.limit, r.windowMs, r.cost ?? 1);
    if (requests.length > 1) assertDistinctKeys(requests.map((r) => r.key));
    const now = Math.floor(this.clock.now());
    if (now >= this.nextSweepAt) this.sweep(now);

    const prepared = requests.map((r) => {
      const b = effectiveBuckets(r.windowMs, this.buckets);
      const shape = windowShape(r.windowMs, b);
      const entry = this.entries.get(r.key);
      // A key last used with another window (config changed) starts over.
      const same = entry !== undefined && entry.shape === shape;
      const t: Tally = tally(same ? entry.buckets : [], now, r.windowMs, b);
      return { r, b, shape, entry: same ? entry : undefined, t, cost: r.cost ?? 1 };
    });
    const allowed = prepared.every((p) => p.t.sum + p.cost <= p.r.limit);
    const taken = take && allowed;

    if (taken) {
      for (const p of prepared) {
        const entry = p.entry ?? { shape: p.shape, buckets: new Map<number, number>(), expiresAt: 0 };
        for (const index of entry.buckets.keys()) if (index < p.t.oldest) entry.buckets.delete(index);
        entry.buckets.set(p.t.current, (entry.buckets.get(p.t.current) ?? 0) + p.cost);
        entry.expiresAt = bucketLeavesAt(p.t.current, p.r.windowMs, p.b);
        this.entries.set(p.r.key, entry);
      }
    }
    const decisions = prepared.map((p) =>
      decide(p.t, { now, limit: p.r.limit, windowMs: p.r.windowMs, buckets: p.b, cost: p.cost, taken }),
    );
    return { allowed, decisions };
  }
}
