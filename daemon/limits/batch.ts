import { isBatchRateLimiter, type BatchDecision, type BatchRequest, type RateLimiter } from './types.js';

/**
 * Decides several keys so that a denial by one takes nothing from the others.
 * Both shipped backends do it atomically (one synchronous step in memory, one
 * Lua script in Redis). For any other RateLimiter it peeks every key, and only
 * if all have room consumes them all: a request racing in between can then make
 * one consume fail after another has charged its key (one request's worth of
 * over-count on one key, never an over-admission), which is acceptable for a
 * limiter that does not ship.
 */
export async function consumeBatch(limiter: RateLimiter, requests: BatchRequest[]): Promise<BatchDecision> {
  if (isBatchRateLimiter(limiter)) return limiter.consumeAll(requests);
  const peeks = await Promise.all(requests.map((r) => limiter.peek(r.key, r.limit, r.windowMs, r.cost ?? 1)));
  if (!peeks.every((d) => d.allowed)) return { allowed: false, decisions: peeks };
  const decisions = await Promise.all(requests.map((r) => limiter.consume(r.key, r.limit, r.windowMs, r.cost ?? 1)));
  return { allowed: decisions.every((d) => d.allowed), decisions };
}
