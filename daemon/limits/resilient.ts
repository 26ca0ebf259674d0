import { GatewayError } from '../errors.js';
import { isRedisUnavailableError } from '../redis.js';
import { consumeBatch } from './batch.js';
import { RateLimitBackendError } from './errors.js';
import type { RateLimitMetrics } from './metrics.js';
import type { BatchDecision, BatchRateLimiter, BatchRequest, RateLimitDecision, RateLimiter } from './types.js';

/**
 * What to do when the backend cannot decide. fail_closed: answer 503 UNAVAILABLE
 * with Retry-After (the safe choice for money-moving routes and login
 * throttling). fail_open: let the request through, marked `degraded` (for
 * routes where an outage of the limiter should not become an outage of the API).
 */
export type FailureMode = 'fail_closed' | 'fail_open';

export interface ResilientRateLimiterOptions {
  limiter: RateLimiter;
  metrics: RateLimitMetrics;
  /** Default mode when a call does not name one (default fail_closed). */
  mode?: FailureMode;
  /** Retry-After of the 503 (default 1 s: ioredis retries every <= 2 s). */
  retryAfterSeconds?: number;
}

/**
 * Wraps a limiter with the failure policy. Only backend failures (a
 * RateLimitBackendError, or a raw Redis connection error) are handled; argument
 * errors pass through. Nothing is cached: the next call after Redis is back
 * goes to Redis, so recovery needs no restart.
 */
export class ResilientRateLimiter implements BatchRateLimiter {
  private readonly inner: RateLimiter;
  private readonly metrics: RateLimitMetrics;
  readonly mode: FailureMode;
  private readonly retryAfterSeconds: number;

  constructor(options: ResilientRateLimiterOptions) {
    this.inner = options.limiter;
    this.metrics = options.metrics;
    this.mode = options.mode ?? 'fail_closed';
    this.retryAfterSeconds = options.retryAfterSeconds ?? 1;
  }

  async consume(key: string, limit: number, windowMs: number, cost = 1, mode = this.mode): Promise<RateLimitDecision> {
    try {
      return await this.inner.consume(key, limit, windowMs, cost);
    } catch (err) {
      this.handle(err, mode);
      return degradedDecision(limit);
    }
  }

  async peek(key: string, limit: number, windowMs: number, cost = 1, mode = this.mode): Promise<RateLimitDecision> {
    try {
      return await this.inner.peek(key, limit, windowMs, cost);
    } catch (err) {
      this.handle(err, mode);
      return degradedDecision(limit);
    }
  }

  async consumeAll(requests: BatchRequest[], mode = this.mode): Promise<BatchDecision> {
    try {
      return await consumeBatch(this.inner, requests);
    } catch (err) {
      this.handle(err, mode);
      return { allowed: true, degraded: true, decisions: requests.map((r) => degradedDecision(r.limit)) };
    }
  }

  /** fail_open: a reset that could not happen is dropped (the key simply expires later). */
  async reset(key: string, mode = this.mode): Promise<void> {
    try {
      await this.inner.reset(key);
    } catch (err) {
      this.handle(err, mode);
    }
  }

  /** Best effort: a refund that cannot happen leaves the unit spent (the safe side). */
  async refund(key: string, windowMs: number, cost = 1): Promise<void> {
    try {
      await this.inner.refund?.(key, windowMs, cost);
    } catch (err) {
      this.handle(err, 'fail_open');
    }
  }

  async close(): Promise<void> {
    await this.inner.close();
  }

  /** Rethrows what is not a backend failure; counts the rest and throws 503 when failing closed. */
  private handle(err: unknown, mode: FailureMode): void {
    if (!(err instanceof RateLimitBackendError) && !isRedisUnavailableError(err)) throw err;
    this.metrics.recordBackendFailure(mode);
    if (mode === 'fail_closed') {
      const seconds = String(this.retryAfterSeconds);
      throw new GatewayError('UNAVAILABLE', 'rate limiting is temporarily unavailable; retry shortly', {
        headers: { 'Retry-After': seconds },
        cause: err,
      });
    }
  }
}

/** The fail_open answer: allowed, nothing known about the budget (reported as untouched). */
function degradedDecision(limit: number): RateLimitDecision {
  return { allowed: true, limit, remaining: limit, resetMs: 0, retryAfterMs: 0, degraded: true };
}
