import argon2 from 'argon2';
import { GatewayError } from '../errors.js';

/** OWASP's argon2id minimum: 19 MiB, 2 iterations, 1 lane. */
export const ARGON2_OPTIONS = { type: argon2.argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;
export const MIN_PASSWORD_CHARS = 12;
export const MAX_PASSWORD_BYTES = 1024;

/** Refuses bad passwords before any hashing work: length in characters, size in bytes, control characters. */
export function checkPasswordPolicy(password: unknown, field = 'password'): string {
  if (typeof password !== 'string') throw new GatewayError('INVALID_FIELD', `${field} must be a string`, { details: [{ field, message: 'must be string' }] });
  if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) {
    throw new GatewayError('INVALID_FIELD', `${field} must be at most ${MAX_PASSWORD_BYTES} bytes`, {
      details: [{ field, message: `must be at most ${MAX_PASSWORD_BYTES} bytes` }],
    });
  }
  if ([...password].length < MIN_PASSWORD_CHARS) {
    throw new GatewayError('INVALID_FIELD', `${field} must be at least ${MIN_PASSWORD_CHARS} characters`, {
      details: [{ field, message: `must be at least ${MIN_PASSWORD_CHARS} characters` }],
    });
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(password)) {
    throw new GatewayError('INVALID_FIELD', `${field} must not contain control characters`, {
      details: [{ field, message: 'must not contain control characters' }],
    });
  }
  return password;
}

/**
 * argon2id hashing with a cap on concurrent work: each hash holds ~19 MiB, so a
 * flood of logins waits in a bounded queue and the overflow is refused with 503,
 * never an out-of-memory crash.
 */
export class PasswordHasher {
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  private dummy: Promise<string> | null = null;

  constructor(private readonly options: { maxConcurrent: number; maxQueue?: number }) {}

  private async slot<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.options.maxConcurrent) {
      if (this.waiting.length >= (this.options.maxQueue ?? this.options.maxConcurrent * 16)) {
        throw new GatewayError('UNAVAILABLE', 'too many sign-ins in progress; retry shortly', { headers: { 'Retry-After': '1' } });
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running += 1;
    }
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running -= 1;
    }
  }

  hash(password: string): Promise<string> {
    return this.slot(() => argon2.hash(password, ARGON2_OPTIONS));
  }

  /** Verifies; with no stored hash (unknown email) it does the same work against a dummy hash and fails. */
  async verify(storedHash: string | null, password: string): Promise<boolean> {
    if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) return false;
    const target = storedHash ?? (await (this.dummy ??= argon2.hash('keen-dummy-password-for-timing', ARGON2_OPTIONS)));
    return this.slot(async () => {
      try {
        const ok = await argon2.verify(target, password);
        return ok && storedHash !== null;
      } catch {
        return false;
      }
    });
  }
}
