import { createHash } from 'node:crypto';
import { GatewayError } from '../errors.js';
import { consumeBatch } from '../limits/batch.js';
import type { BatchRequest, RateLimiter } from '../limits/types.js';

export interface LoginThrottleOptions {
  /** Failed checks allowed per (email, client address) per window; the first level of the email-wide back-off. */
  maxFailuresPerEmail: number;
  /** Failed checks allowed per client address (all emails) per window. */
  maxFailuresPerIp: number;
  /** The window of the per-(email, address) and per-address counts. */
  windowSeconds: number;
  /** The longest wait that failures from every address together can impose on an email. */
  maxBackoffSeconds: number;
}

/**
 * Levels of the email-wide back-off. Level i allows `maxFailuresPerEmail + i`
 * failures per `maxBackoffSeconds / 2^(LEVELS - 1 - i)`: after a burst of
 * failures the wait grows level by level (an eighth, a quarter, half the cap)
 * and is never longer than the cap, since the widest window is the cap itself.
 */
const BACKOFF_LEVELS = 4;

/** The reservation of one secret check; see LoginThrottle.reserve. */
export class ThrottledAttempt {
  private state: 'open' | 'failed' | 'settled' = 'open';

  constructor(
    private readonly limiter: RateLimiter,
    private readonly requests: readonly BatchRequest[],
    /** This address's key for the email: forgotten on a success. */
    private readonly pairKey: string,
  ) {}

  /** The secret was wrong: the reserved attempt stays counted. */
  failed(): void {
    if (this.state === 'open') this.state = 'failed';
  }

  /**
   * The secret was right: the reservation is given back everywhere and this
   * address's failures for the email are forgotten. Never fails the request: a
   * refund that cannot happen leaves the unit spent until it ages out.
   */
  async succeeded(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'settled';
    await Promise.all(
      this.requests.map((r) =>
        (r.key === this.pairKey ? this.limiter.reset(r.key) : this.refund(r)).catch(() => undefined),
      ),
    );
  }

  /** Nothing was decided (an error before or during the check): the reservation is given back. No-op once failed or succeeded. */
  async release(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'settled';
    await Promise.all(this.requests.map((r) => this.refund(r).catch(() => undefined)));
  }

  private async refund(r: BatchRequest): Promise<void> {
    await this.limiter.refund?.(r.key, r.windowMs, 1);
  }
}

/**
 * Throttles guessing of passwords and second factors, at sign-in and behind a
 * session, on the shared limiter (so it holds across daemons when Redis is
 * configured).
 *
 * An attempt is reserved before its secret is checked: one atomic, all-or-
 * nothing decision over every budget below, so parallel attempts cannot all
 * pass a check made before any of them failed. A failure keeps the
 * reservation; a success gives it back. An attempt refused while throttled
 * takes nothing and changes nothing.
 *
 * - per (email, address): `maxFailuresPerEmail` per window, strictly: an
 *   address that guessed wrong keeps waiting the whole window;
 * - per address: `maxFailuresPerIp` per window, whatever the emails;
 * - per email, from every address together: a back-off that grows with the
 *   failures but never asks anyone to wait longer than `maxBackoffSeconds`, so
 *   an attacker elsewhere slows the account down but cannot shut its owner
 *   out; an administrator lifts it at once (`unlock`).
 *
 * Unknown and known emails are throttled alike, so the answer never tells
 * whether an account exists.
 */
export class LoginThrottle {
  constructor(
    private readonly limiter: RateLimiter,
    private readonly options: LoginThrottleOptions,
  ) {}

  /** Hashed: user input never becomes a raw key name in Redis. */
  private emailPart(email: string): string {
    return createHash('sha256').update(email).digest('base64url').slice(0, 22);
  }

  private emailLevels(e: string): BatchRequest[] {
    const capMs = this.options.maxBackoffSeconds * 1000;
    return Array.from({ length: BACKOFF_LEVELS }, (_, i) => ({
      key: `login:email:${e}:${i}`,
      limit: this.options.maxFailuresPerEmail + i,
      windowMs: Math.max(1, Math.round(capMs / 2 ** (BACKOFF_LEVELS - 1 - i))),
    }));
  }

  /**
   * Reserves one check of a secret for `email` from `ip`, or throws 429
   * LOGIN_THROTTLED (Retry-After: until every refusing budget has room again).
   * The caller settles the attempt: `failed()`, `succeeded()`, or `release()`
   * in a finally (a no-op after the other two).
   */
  async reserve(email: string, ip: string): Promise<ThrottledAttempt> {
    const e = this.emailPart(email);
    const windowMs = this.options.windowSeconds * 1000;
    const pairKey = `login:pair:${e}:${ip}`;
    const requests: BatchRequest[] = [
      { key: pairKey, limit: this.options.maxFailuresPerEmail, windowMs },
      { key: `login:ip:${ip}`, limit: this.options.maxFailuresPerIp, windowMs },
      ...this.emailLevels(e),
    ];
    const batch = await consumeBatch(this.limiter, requests);
    if (!batch.allowed) {
      const waitMs = Math.max(0, ...batch.decisions.filter((d) => !d.allowed).map((d) => d.retryAfterMs));
      const seconds = Math.max(1, Math.ceil(waitMs / 1000));
      throw new GatewayError('LOGIN_THROTTLED', 'too many failed sign-in attempts; retry later', {
        headers: { 'Retry-After': String(seconds) },
        details: { retry_after: seconds },
      });
    }
    return new ThrottledAttempt(this.limiter, requests, pairKey);
  }

  /**
   * Lifts the email-wide back-off of `email` (`keen-admin users unlock`): its
   * owner signs in at once from an address of their own. Addresses that failed
   * for this email themselves stay throttled until their window has passed.
   */
  async unlock(email: string): Promise<void> {
    await Promise.all(this.emailLevels(this.emailPart(email)).map((r) => this.limiter.reset(r.key)));
  }
}
