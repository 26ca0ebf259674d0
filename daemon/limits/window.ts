/**
 * The sliding window shared by both backends, as pure functions. The Redis Lua
 * script (redis-scripts.ts) is a line-by-line mirror of `tally` and `decide`, so
 * the two backends give identical decisions for identical inputs (a test runs
 * one random sequence through both and compares every decision).
 *
 * A key's window of `windowMs` is cut into B sub-buckets. Bucket `i` holds the
 * integer milliseconds `t` with `floor(t * B / windowMs) === i`, i.e. boundaries
 * at `ceil(i * windowMs / B)` since the epoch: exact integer results in doubles
 * as long as `t * B < 2^53` (B <= 1000 is safe for the next 100,000 years).
 * See docs/rate-limits.md for why a sliding window and the proof of its bound.
 */
import type { RateLimitDecision } from './types.js';

/** Sub-buckets per window unless the limiter is told otherwise. */
export const DEFAULT_BUCKETS = 60;

/** B, but never a bucket shorter than 1 ms. */
export function effectiveBuckets(windowMs: number, buckets: number): number {
  return Math.min(buckets, windowMs);
}

/** The bucket holding millisecond `t`. */
export function bucketIndex(t: number, windowMs: number, buckets: number): number {
  return Math.floor((t * buckets) / windowMs);
}

/** The first millisecond of bucket `i`. */
export function bucketStart(i: number, windowMs: number, buckets: number): number {
  return Math.ceil((i * windowMs) / buckets);
}

/**
 * The first instant at which bucket `i` no longer overlaps the window
 * `(now - windowMs, now]`: its last millisecond is `bucketStart(i + 1) - 1`, and
 * that leaves the window when `now - windowMs >= bucketStart(i + 1) - 1`.
 */
export function bucketLeavesAt(i: number, windowMs: number, buckets: number): number {
  return bucketStart(i + 1, windowMs, buckets) + windowMs - 1;
}

/** A string naming the bucket layout; a key whose stored layout differs is treated as empty. */
export function windowShape(windowMs: number, buckets: number): string {
  return `${windowMs}/${buckets}`;
}

/** What a key holds at `now`, as far as the window is concerned. */
export interface Tally {
  /** Sum of every bucket overlapping `(now - windowMs, now]`, the oldest one counted whole. */
  sum: number;
  /** Those buckets that are not empty, as `[index, count]`, oldest first. */
  live: Array<[number, number]>;
  /** Index of the oldest counted bucket; anything older can be deleted. */
  oldest: number;
  /** Index of the bucket `now` falls in; a taken cost goes there. */
  current: number;
}

/** Sums the buckets that count at `now`. Buckets newer than `now` (a clock that went back) are ignored. */
export function tally(buckets: Iterable<[number, number]>, now: number, windowMs: number, b: number): Tally {
  const oldest = bucketIndex(now - windowMs + 1, windowMs, b);
  const current = bucketIndex(now, windowMs, b);
  const live: Array<[number, number]> = [];
  let sum = 0;
  for (const [index, count] of buckets) {
    if (index >= oldest && index <= current && count > 0) {
      live.push([index, count]);
      sum += count;
    }
  }
  live.sort((x, y) => x[0] - y[0]);
  return { sum, live, oldest, current };
}

/** The inputs of one decision besides the tally. */
export interface DecideInput {
  now: number;
  limit: number;
  windowMs: number;
  /** Effective bucket count (see `effectiveBuckets`). */
  buckets: number;
  cost: number;
  /** True when the cost was added to the current bucket (an allowed consume in an allowed batch). */
  taken: boolean;
}

/**
 * The decision for a tally. `allowed` says whether `cost` fits on top of the
 * tally; `remaining` and `resetMs` describe the state after the cost was taken
 * (if it was); `retryAfterMs` (denials only) is exact: the instant enough of the
 * oldest buckets have left the window for `cost` to fit, assuming no other use.
 */
export function decide(t: Tally, input: DecideInput): RateLimitDecision {
  const { now, limit, windowMs, buckets, cost, taken } = input;
  const allowed = t.sum + cost <= limit;
  const sum = taken ? t.sum + cost : t.sum;
  const remaining = Math.max(0, limit - sum);
  const newest = taken ? t.current : t.live.length > 0 ? t.live[t.live.length - 1]![0] : null;
  const resetMs = newest === null ? 0 : bucketLeavesAt(newest, windowMs, buckets) - now;
  let retryAfterMs = 0;
  if (!allowed) {
    if (cost > limit) {
      // It will never fit; say "a whole window" rather than invent a time it would.
      retryAfterMs = windowMs;
    } else {
      let freed = 0;
      for (const [index, count] of t.live) {
        freed += count;
        if (t.sum - freed + cost <= limit) {
          retryAfterMs = bucketLeavesAt(index, windowMs, buckets) - now;
          break;
        }
      }
    }
    retryAfterMs = Math.max(1, retryAfterMs);
  }
  return { allowed, limit, remaining, resetMs, retryAfterMs };
}

/** Throws a RangeError for arguments no policy should produce (a bug, not a backend failure). */
export function validateRequest(key: string, limit: number, windowMs: number, cost: number): void {
  if (typeof key !== 'string' || key.length === 0) throw new RangeError('rate limit key must be a non-empty string');
  if (!Number.isSafeInteger(limit) || limit < 0)
    throw new RangeError(`rate limit must be an integer >= 0, got ${limit}`);
  if (!Number.isSafeInteger(windowMs) || windowMs < 1) {
    throw new RangeError(`rate limit window must be an integer >= 1 ms, got ${windowMs}`);
  }
  if (!Number.isSafeInteger(cost) || cost < 1)
    throw new RangeError(`rate limit cost must be an integer >= 1, got ${cost}`);
}

/** Throws when a batch names a key twice: the all-or-nothing check assumes distinct keys. */
export function assertDistinctKeys(keys: string[]): void {
  if (new Set(keys).size !== keys.length) throw new RangeError('a rate limit batch must not name a key twice');
}

/** Validates the limiter's bucket count option. */
export function validateBuckets(buckets: number): number {
  if (!Number.isSafeInteger(buckets) || buckets < 1 || buckets > 1000) {
    throw new RangeError(`buckets must be an integer from 1 to 1000, got ${buckets}`);
  }
  return buckets;
}
