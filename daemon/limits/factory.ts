import type { Redis } from 'ioredis';
import type { Clock } from '../clock.js';
import { MemoryRateLimiter } from './memory.js';
import type { RateLimitMetrics } from './metrics.js';
import { RedisRateLimiter } from './redis.js';
import { ResilientRateLimiter, type FailureMode } from './resilient.js';

export interface CreateRateLimiterOptions {
  /** A client from `createRedis` when KEEN_REDIS_URL is set; null for the in-process limiter. */
  redis: Redis | null;
  metrics: RateLimitMetrics;
  /** Time for the in-process limiter (Redis uses its own server time). */
  clock?: Clock;
  /** Default failure mode (default fail_closed); policies and calls may override it. */
  mode?: FailureMode;
  /** Redis key prefix (default `keen:rl:`). */
  prefix?: string;
}

/** For the composition root: the limiter the config asks for, wrapped in the failure policy. */
export function createRateLimiter(options: CreateRateLimiterOptions): ResilientRateLimiter {
  const limiter = options.redis
    ? new RedisRateLimiter({ redis: options.redis, prefix: options.prefix })
    : new MemoryRateLimiter({ clock: options.clock });
  return new ResilientRateLimiter({ limiter, metrics: options.metrics, mode: options.mode });
}
