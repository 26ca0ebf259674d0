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
}

export interface RateLimiter {
  /** Takes `cost` units (default 1) from `key`'s budget of `limit` per `windowMs`, or denies without taking any. */
  consume(key: string, limit: number, windowMs: number, cost?: number): Promise<RateLimitDecision>;
  /** The decision `consume` would make, without taking anything. */
  peek(key: string, limit: number, windowMs: number): Promise<RateLimitDecision>;
  /** Forgets everything about `key` (a successful login resets its failure counter). */
  reset(key: string): Promise<void>;
  close(): Promise<void>;
}
