import type { Clock } from '../clock.js';
import { GatewayError } from '../errors.js';
import type { Database } from '../storage/database.js';
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
  database: Database;
  clock: Clock;
  /** How long a finished response is kept and replayed. Default 24 h (docs/API.md). */
  retentionMs?: number;
  /** How long an unfinished claim blocks the key, in case its daemon died mid-request. Default 5 min. */
  inFlightTtlMs?: number;
}

const HASH_RE = /^[0-9a-f]{16,64}$/;

/**
 * Stored responses for requests carrying an `Idempotency-Key`, scoped per user
 * (grant, execute). The first request claims the key by inserting its row (the
 * primary key (user_id, key) decides races on both dialects); later ones with
 * the same key get the stored response (same request hash), 409
 * IDEMPOTENCY_KEY_REUSED (other hash) or 409 IDEMPOTENCY_KEY_IN_USE (first still
 * running). A request that throws frees its key so a retry can run.
 */
export class IdempotencyStore {
  private readonly database: Database;
  private readonly clock: Clock;
  readonly retentionMs: number;
  readonly inFlightTtlMs: number;
  private lastPrune = 0;

  constructor(options: IdempotencyStoreOptions) {
    this.database = options.database;
    this.clock = options.clock;
    this.retentionMs = options.retentionMs ?? 24 * 3600 * 1000;
    this.inFlightTtlMs = options.inFlightTtlMs ?? 5 * 60 * 1000;
  }

  /**
   * Runs `fn` once per (user, key, request): see the class comment. `requestHash`
   * comes from `hashRequest()` over what makes two requests the same.
   */
  async run<B>(
    userId: string,
    key: string,
    requestHash: string,
    fn: () => Promise<StoredResponse<B>>,
  ): Promise<IdempotentResult<B>> {
    assertIdempotencyKey(key);
    if (!HASH_RE.test(requestHash)) throw new Error('requestHash must be a lowercase hex digest');
    await this.maybePrune();

    const claimedAt = await this.claim<B>(userId, key, requestHash);
    if (typeof claimedAt !== 'number') return claimedAt;

    let response: StoredResponse<B>;
    try {
      response = await fn();
    } catch (err) {
      await this.free(userId, key, claimedAt);
      throw err;
    }
    if (!Number.isInteger(response.status) || response.status < 100 || response.status > 599) {
      await this.free(userId, key, claimedAt);
      throw new Error(`idempotent handler returned an invalid status ${response.status}`);
    }
    const bodyText = JSON.stringify(response.body ?? null);
    await this.database.db
      .updateTable('idempotency_keys')
      .set({
        status: 'done',
        response_status: response.status,
        response_body: bodyText,
        expires_at: claimedAt + this.retentionMs,
      })
      .where('user_id', '=', userId)
      .where('key', '=', key)
      .where('status', '=', 'in_flight')
      .where('created_at', '=', claimedAt)
      .execute();
    return { status: response.status, body: response.body, replayed: false };
  }

  /** Deletes every expired row (finished responses past retention, abandoned claims). Returns how many. */
  async pruneExpired(now: number = this.clock.now()): Promise<number> {
    const r = await this.database.db.deleteFrom('idempotency_keys').where('expires_at', '<=', now).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  /**
   * Claims the key (returns the claim time) or answers from the existing row.
   * A few attempts, because the row seen as "taken" may be freed or expire
   * between the insert and the read.
   */
  private async claim<B>(userId: string, key: string, requestHash: string): Promise<number | IdempotentResult<B>> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const now = this.clock.now();
      await this.database.db
        .deleteFrom('idempotency_keys')
        .where('user_id', '=', userId)
        .where('key', '=', key)
        .where('expires_at', '<=', now)
        .execute();
      const inserted = await this.database.db
        .insertInto('idempotency_keys')
        .values({
          user_id: userId,
          key,
          request_hash: requestHash,
          status: 'in_flight',
          response_status: null,
          response_body: null,
          created_at: now,
          expires_at: now + this.inFlightTtlMs,
        })
        .onConflict((oc) => oc.columns(['user_id', 'key']).doNothing())
        .executeTakeFirst();
      if (Number(inserted.numInsertedOrUpdatedRows ?? 0n) === 1) return now;

      const row = await this.database.db
        .selectFrom('idempotency_keys')
        .selectAll()
        .where('user_id', '=', userId)
        .where('key', '=', key)
        .executeTakeFirst();
      if (!row) continue; // freed meanwhile: try to claim again
      if (row.request_hash !== requestHash) {
        throw new GatewayError('IDEMPOTENCY_KEY_REUSED', 'this Idempotency-Key was used with a different request');
      }
      if (row.status === 'in_flight') {
        throw new GatewayError('IDEMPOTENCY_KEY_IN_USE', 'a request with this Idempotency-Key is still being processed', {
          headers: { 'Retry-After': '1' },
        });
      }
      return {
        status: row.response_status ?? 200,
        body: JSON.parse(row.response_body ?? 'null') as B,
        replayed: true,
      };
    }
    throw new GatewayError('IDEMPOTENCY_KEY_IN_USE', 'a request with this Idempotency-Key is still being processed', {
      headers: { 'Retry-After': '1' },
    });
  }

  private async free(userId: string, key: string, claimedAt: number): Promise<void> {
    await this.database.db
      .deleteFrom('idempotency_keys')
      .where('user_id', '=', userId)
      .where('key', '=', key)
      .where('status', '=', 'in_flight')
      .where('created_at', '=', claimedAt)
      .execute();
  }

  /** Prunes the whole table at most once a minute, from whichever request comes by. */
  private async maybePrune(): Promise<void> {
    const now = this.clock.now();
    if (now - this.lastPrune < 60_000) return;
    this.lastPrune = now;
    await this.pruneExpired(now).catch(() => undefined);
  }
}
