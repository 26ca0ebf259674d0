/**
 * The limiter every policy uses (per user and tier, per API key, per IP, login
 * throttling). Two backends: in-process and Redis. A decision is atomic: no
 * check-then-increment race, one Redis round trip.
 */
export interface RateLimitDecision {
  allowed: boolean;
  limit: number;
  /** Units left in the current window after this decision. */
  remaining: number;
  /** Milliseconds until the window has fully drained (for RateLimit / X-RateLimit-Reset). */
  resetMs: number;
  /** When denied: milliseconds until `cost` units fit again; 0 when allowed. */
  retryAfterMs: number;
  /** Set by ResilientRateLimiter when the backend failed and the request was let through (fail_open). */
  degraded?: boolean;
}

export interface RateLimiter {
  /** Takes `cost` units (default 1) from `key`'s budget of `limit` per `windowMs`, or denies without taking any. */
  consume(key: string, limit: number, windowMs: number, cost?: number): Promise<RateLimitDecision>;
  /**
   * The decision `consume` would make, without taking anything (`cost` defaults to 1).
   * `remaining` is what is left now, since nothing was taken.
   */
  peek(key: string, limit: number, windowMs: number, cost?: number): Promise<RateLimitDecision>;
  /** Forgets everything about `key` (a successful login resets its failure counter). */
  reset(key: string): Promise<void>;
  /**
   * Gives back up to `cost` units most recently taken from `key` (never below
   * zero): a request refused for another reason (a concurrency limit) does not
   * spend request quota.
   */
  refund?(key: string, windowMs: number, cost?: number): Promise<void>;
  close(): Promise<void>;
}

/** One key's part in an all-or-nothing batch. */
export interface BatchRequest {
  key: string;
  limit: number;
  windowMs: number;
  /** Default 1. */
  cost?: number;
}

/**
 * The outcome of a batch: `allowed` when every key had room, and then every key
 * was charged; otherwise nothing was taken from any key. `decisions[i]` answers
 * `requests[i]`: a key with room in a denied batch reports `allowed: true` with
 * `remaining` as it stands (nothing was taken from it).
 */
export interface BatchDecision {
  allowed: boolean;
  decisions: RateLimitDecision[];
  degraded?: boolean;
}

/** A limiter that can decide several keys atomically (both shipped backends can). */
export interface BatchRateLimiter extends RateLimiter {
  /** All-or-nothing across keys; keys must be distinct. */
  consumeAll(requests: BatchRequest[]): Promise<BatchDecision>;
}

/** True when `limiter` can decide a batch atomically. */
export function isBatchRateLimiter(limiter: RateLimiter): limiter is BatchRateLimiter {
  return typeof (limiter as Partial<BatchRateLimiter>).consumeAll === 'function';
}
