import { isRedisUnavailableError } from '../redis.js';

/**
 * The limiter's backend (Redis) failed, so no decision was made. Thrown by
 * RedisRateLimiter for every Redis error; ResilientRateLimiter turns it into a
 * 503 (fail_closed) or a degraded allow (fail_open). Argument errors stay
 * RangeErrors: they are bugs, and no failure policy should hide them.
 */
export class RateLimitBackendError extends Error {
  /** True when Redis could not be reached (as opposed to e.g. a script error). */
  readonly unavailable: boolean;

  constructor(message: string, cause: unknown) {
    super(message, { cause });
    this.name = 'RateLimitBackendError';
    this.unavailable = isRedisUnavailableError(cause);
  }
}
