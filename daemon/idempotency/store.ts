import type { Clock } from '../clock.js';
import { GatewayError } from '../errors.js';
import type { Database, Queryable } from '../storage/database.js';
import type { IdempotencyRepository } from '../storage/repos/idempotency.js';
import { assertIdempotencyKey } from './key.js';

/** What a keyed request answered: replayed as it was for a retry. */
export interface StoredResponse<B = unknown> {
  status: number;
  body: B;
}

export interface IdempotentResult<B = unknown> extends StoredResponse<B> {
  /** True when this is the stored answer of an earlier request, and `fn` did not run. */
  replayed: boolean;
}

export interface IdempotencyStoreOptions {
  /** Opens the transaction of `run()`. */
  database: Database;
  /** The `idempotency_keys` table (built by the composition root). */
  keys: IdempotencyRepository;
  clock: Clock;
  /** How long a finished response is kept and replayed. Default 24 h (docs/API.md). */
  retentionMs?: number;
}

const HASH_RE = /^[0-9a-f]{16,64}$/;

/**
 * Stored responses for requests carrying an `Idempotency-Key`, scoped per user
 * (grant, execute). The key's row is written in the same transaction as the
 * request's own work: claimed first (an insert the primary key (user_id, key)
 * decides), then filled with the response before the commit. So a request
 * that committed always has its response stored and is replayed, and one that
 * did not (it failed, or its daemon died mid-way) leaves no claim behind: a
 * retry runs it, at once, as if it had never been sent.
 *
 * A retry that arrives while the first is still running waits for it (the
 * second claim blocks on Postgres's row lock, or behind SQLite's write lock)
 * and then gets its answer. Later requests get the stored response (same
 * request hash) or 409 IDEMPOTENCY_KEY_REUSED (another hash).
 */
export class IdempotencyStore {
  private readonly database: Database;
  private readonly keys: IdempotencyRepository;
  private readonly clock: Clock;
  readonly retentionMs: number;
  private lastPrune = 0;

  constructor(options: IdempotencyStoreOptions) {
    this.database = options.database;
    this.keys = options.keys;
    this.clock = options.clock;
    this.retentionMs = options.retentionMs ?? 24 * 3600 * 1000;
  }

  /**
   * Runs `fn` once per (user, key, request), in one transaction with the key's
   * row: see the class comment. `requestHash` comes from `hashRequest()` over
   * what makes two requests the same. `fn` must do its writes in `trx`.
   */
  async run<B>(
    userId: string,
    key: string,
    requestHash: string,
    fn: (trx: Queryable) => Promise<StoredResponse<B>>,
  ): Promise<IdempotentResult<B>> {
    this.check(key, requestHash);
    await this.maybePrune();
    return this.database.transaction(async (trx) => {
      const earlier = await this.claimIn<B>(trx, userId, key, requestHash);
      if (earlier) return earlier;
      const response = await fn(trx);
      await this.completeIn(trx, userId, key, response);
      return { status: response.status, body: response.body, replayed: false };
    });
  }

  /**
   * Inside the caller's transaction: claims the key, or returns the stored
   * response of the request that claimed it first (throws 409 when that one
   * was another request). Follow a null with the work and `completeIn()` in the
   * same transaction.
   */
  async claimIn<B>(
    trx: Queryable,
    userId: string,
    key: string,
    requestHash: string,
  ): Promise<IdempotentResult<B> | null> {
    this.check(key, requestHash);
    const now = this.clock.now();
    await this.keys.deleteExpired(trx, userId, key, now);
    const claimed = await this.keys.claim(trx, {
      user_id: userId,
      key,
      request_hash: requestHash,
      status: 'in_flight',
      response_status: null,
      response_body: null,
      created_at: now,
      expires_at: now + this.retentionMs,
    });
    if (claimed) return null;

    // Another request holds the key and has committed (a concurrent claim waited for it).
    const row = await this.keys.find(trx, userId, key);
    if (!row) throw new Error('idempotency key row vanished under its conflict');
    if (row.request_hash !== requestHash) {
      throw new GatewayError('IDEMPOTENCY_KEY_REUSED', 'this Idempotency-Key was used with a different request');
    }
    if (row.status === 'in_flight') {
      // Only a claim left by an older version of the daemon, which claimed outside the transaction; it expires.
      throw new GatewayError('IDEMPOTENCY_KEY_IN_USE', 'a request with this Idempotency-Key is still being processed', {
        headers: { 'Retry-After': '1' },
      });
    }
    return { status: row.response_status ?? 200, body: JSON.parse(row.response_body ?? 'null') as B, replayed: true };
  }

  /** Inside the same transaction as `claimIn()`: stores the response that retries will get. */
  async completeIn<B>(trx: Queryable, userId: string, key: string, response: StoredResponse<B>): Promise<void> {
    if (!Number.isInteger(response.status) || response.status < 100 || response.status > 599) {
      throw new Error(`idempotent handler returned an invalid status ${response.status}`);
    }
    const now = this.clock.now();
    const done = await this.keys.complete(trx, userId, key, {
      response_status: response.status,
      response_body: JSON.stringify(response.body ?? null),
      expires_at: now + this.retentionMs,
    });
    if (!done) throw new Error('idempotency key was not claimed in this transaction');
  }

  /** Deletes every expired row (finished responses past retention, abandoned claims). Returns how many. */
  async pruneExpired(now: number = this.clock.now()): Promise<number> {
    return this.keys.pruneExpired(now);
  }

  private check(key: string, requestHash: string): void {
    assertIdempotencyKey(key);
    if (!HASH_RE.test(requestHash)) throw new Error('requestHash must be a lowercase hex digest');
  }

  /** Prunes the whole table at most once a minute, from whichever request comes by (never inside a transaction). */
  async maybePrune(): Promise<void> {
    const now = this.clock.now();
    if (now - this.lastPrune < 60_000) return;
    this.lastPrune = now;
    await this.pruneExpired(now).catch(() => undefined);
  }
}
