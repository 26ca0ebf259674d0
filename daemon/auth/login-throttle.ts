import { createHash } from 'node:crypto';
import { GatewayError } from '../errors.js';
import type { RateLimiter } from '../limits/types.js';

/** Strikes (attempts while throttled) are counted over a day. */
const STRIKE_WINDOW_MS = 86_400_000;

export interface LoginThrottleOptions {
  maxFailuresPerEmail: number;
  maxFailuresPerIp: number;
  windowSeconds: number;
}

/**
 * Throttles password guessing per email and per client address on the shared
 * limiter (so it holds across daemons when Redis is configured). Only failures
 * count; a success clears the email's count. The wait grows with every attempt
 * made while throttled. Unknown and known emails are throttled alike, so the
 * answer never tells whether an account exists.
 */
export class LoginThrottle {
  constructor(
    private readonly limiter: RateLimiter,
    private readonly options: LoginThrottleOptions,
  ) {}

  private keys(email: string, ip: string) {
    // Hash the email: user input never becomes a raw key name in Redis.
    const e = createHash('sha256').update(email).digest('base64url').slice(0, 22);
    return { email: `login:email:${e}`, ip: `login:ip:${ip}`, strikes: `login:strikes:${e}` };
  }

  private get windowMs(): number {
    return this.options.windowSeconds * 1000;
  }

  /**
   * Throws 429 LOGIN_THROTTLED when either budget is spent. Attempts made while
   * throttled are strikes; once a day's worth of strikes is spent the wait grows
   * from "until a failure ages out" to "until the strikes age out" (hours).
   */
  async check(email: string, ip: string): Promise<void> {
    const k = this.keys(email, ip);
    const strikeLimit = this.options.maxFailuresPerEmail * 3;
    const [byEmail, byIp, strikes] = await Promise.all([
      this.limiter.peek(k.email, this.options.maxFailuresPerEmail, this.windowMs),
      this.limiter.peek(k.ip, this.options.maxFailuresPerIp, this.windowMs),
      this.limiter.peek(k.strikes, strikeLimit, STRIKE_WINDOW_MS),
    ]);
    let waitMs = strikes.allowed ? 0 : strikes.retryAfterMs;
    if (waitMs === 0) {
      const blocked = [byEmail, byIp].filter((d) => !d.allowed);
      if (blocked.length === 0) return;
      const strike = await this.limiter.consume(k.strikes, strikeLimit, STRIKE_WINDOW_MS);
      waitMs = Math.max(...blocked.map((d) => d.retryAfterMs), strike.allowed ? 0 : strike.retryAfterMs);
    }
    const seconds = Math.max(1, Math.ceil(waitMs / 1000));
    throw new GatewayError('LOGIN_THROTTLED', 'too many failed sign-in attempts; retry later', {
      headers: { 'Retry-After': String(seconds) },
      details: { retry_after: seconds },
    });
  }

  async recordFailure(email: string, ip: string): Promise<void> {
    const k = this.keys(email, ip);
    await Promise.all([
      this.limiter.consume(k.email, this.options.maxFailuresPerEmail, this.windowMs),
      this.limiter.consume(k.ip, this.options.maxFailuresPerIp, this.windowMs),
    ]);
  }

  async recordSuccess(email: string, ip: string): Promise<void> {
    const k = this.keys(email, ip);
    await Promise.all([this.limiter.reset(k.email), this.limiter.reset(k.strikes)]);
  }
}
