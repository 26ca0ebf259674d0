import argon2 from 'argon2';
import { GatewayError } from '../errors.js';

/** OWASP's argon2id minimum: 19 MiB, 2 iterations, 1 lane. */
export const ARGON2_OPTIONS = { type: argon2.argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;
export const MIN_PASSWORD_CHARS = 12;
export const MAX_PASSWORD_BYTES = 1024;

/** Refuses bad passwords before any hashing work: length in characters, size in bytes, control characters. */
export function checkPasswordPolicy(password: unknown, field = 'password'): string {
  if (typeof password !== 'string')
    throw new GatewayError('INVALID_FIELD', `${field} must be a string`, {
      details: [{ field, message: 'must be string' }],
    });
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
  if (/[\u0000-\u001f\u007f]/.test(password)) {
    throw new GatewayError('INVALID_FIELD', `${field} must not contain control characters`, {
      details: [{ field, message: 'must not contain control characters' }],
    });
  }
  return password;
}

/**
 * Whom a hash is done for, so that no one takes every slot: `clients` are a
 * principal (`user:<id>`) and/or a client address (`ip:<address>`); a sign-in
 * may also use the share of the queue kept for sign-ins.
 */
export interface HashClaim {
  clients: readonly string[];
  signIn?: boolean;
}

export interface PasswordHasherOptions {
  /** Hashes computed at once. */
  maxConcurrent: number;
  /** Hashes waiting for a slot (default maxConcurrent * 16). */
  maxQueue?: number;
  /** Hashes, running or waiting, of one client (default maxConcurrent + maxQueue / 4). */
  maxPerClient?: number;
  /** Room, running or waiting, that only sign-ins may use (default half of maxConcurrent + maxQueue). */
  reservedForSignIn?: number;
}

/**
 * argon2id hashing with a cap on concurrent work: each hash holds ~19 MiB, so a
 * flood waits in a bounded queue and the overflow is refused with 503 (Retry-After:
 * 1), never an out-of-memory crash. The room is shared: one client (a principal
 * or an address) holds at most `maxPerClient` hashes, running or waiting, and
 * work other than sign-in (password changes, user creation) cannot take the
 * share kept for sign-ins, so one account cannot starve everyone's sign-in.
 */
export class PasswordHasher {
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  /** Hashes running or waiting, per client of a claim. */
  private readonly held = new Map<string, number>();
  /** Hashes running or waiting that are not sign-ins. */
  private otherWork = 0;
  private dummy: Promise<string> | null = null;
  private readonly capacity: number;
  private readonly maxPerClient: number;
  private readonly maxOtherWork: number;

  constructor(private readonly options: PasswordHasherOptions) {
    const queue = options.maxQueue ?? options.maxConcurrent * 16;
    this.capacity = options.maxConcurrent + queue;
    this.maxPerClient = Math.max(1, options.maxPerClient ?? options.maxConcurrent + Math.floor(queue / 4));
    this.maxOtherWork = Math.max(1, this.capacity - (options.reservedForSignIn ?? Math.ceil(this.capacity / 2)));
  }

  /** Hashes running or waiting (for tests and a gauge). */
  get pending(): number {
    return this.running + this.waiting.length;
  }

  private async slot<T>(fn: () => Promise<T>, claim: HashClaim | undefined): Promise<T> {
    const clients = [...new Set(claim?.clients ?? [])];
    const signIn = claim?.signIn === true;
    if (this.pending >= this.capacity || (!signIn && this.otherWork >= this.maxOtherWork)) {
      throw new GatewayError('UNAVAILABLE', 'too many sign-ins in progress; retry shortly', {
        headers: { 'Retry-After': '1' },
      });
    }
    if (clients.some((c) => (this.held.get(c) ?? 0) >= this.maxPerClient)) {
      throw new GatewayError('UNAVAILABLE', 'too many password checks in progress for this client; retry shortly', {
        headers: { 'Retry-After': '1' },
      });
    }
    for (const c of clients) this.held.set(c, (this.held.get(c) ?? 0) + 1);
    if (!signIn) this.otherWork += 1;
    try {
      if (this.running >= this.options.maxConcurrent) await new Promise<void>((resolve) => this.waiting.push(resolve));
      else this.running += 1;
      try {
        return await fn();
      } finally {
        const next = this.waiting.shift();
        if (next) next();
        else this.running -= 1;
      }
    } finally {
      for (const c of clients) {
        const n = (this.held.get(c) ?? 1) - 1;
        if (n > 0) this.held.set(c, n);
        else this.held.delete(c);
      }
      if (!signIn) this.otherWork -= 1;
    }
  }

  hash(password: string, claim?: HashClaim): Promise<string> {
    return this.slot(() => argon2.hash(password, ARGON2_OPTIONS), claim);
  }

  /** Verifies; with no stored hash (unknown email) it does the same work against a dummy hash and fails. */
  async verify(storedHash: string | null, password: string, claim?: HashClaim): Promise<boolean> {
    if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) return false;
    const target = storedHash ?? (await (this.dummy ??= argon2.hash('keen-dummy-password-for-timing', ARGON2_OPTIONS)));
    return this.slot(async () => {
      try {
        const ok = await argon2.verify(target, password);
        return ok && storedHash !== null;
      } catch {
        return false;
      }
    }, claim);
  }
}
