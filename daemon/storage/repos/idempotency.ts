import type { Selectable } from 'kysely';
import type { Database, Queryable } from '../database.js';
import type { CreditTables } from '../tables/credits.js';

export type IdempotencyRow = Selectable<CreditTables['idempotency_keys']>;

/**
 * The `idempotency_keys` table: a key's claim, its stored response, and the
 * prune of expired rows. The claim and the response are written in the
 * caller's transaction (daemon/idempotency/store.ts).
 */
export class IdempotencyRepository {
  private readonly db: Queryable;

  constructor(database: Pick<Database, 'db'>) {
    this.db = database.db;
  }

  /** Deletes the user's row for `key` if it expired at `now` (so it can be claimed again). */
  async deleteExpired(trx: Queryable, userId: string, key: string, now: number): Promise<void> {
    await trx
      .deleteFrom('idempotency_keys')
      .where('user_id', '=', userId)
      .where('key', '=', key)
      .where('expires_at', '<=', now)
      .execute();
  }

  /**
   * Inserts the claim unless (user_id, key) exists; true when inserted. A
   * concurrent claim of the same key waits here for the first one's transaction.
   */
  async claim(trx: Queryable, row: IdempotencyRow): Promise<boolean> {
    const inserted = await trx
      .insertInto('idempotency_keys')
      .values(row)
      .onConflict((oc) => oc.columns(['user_id', 'key']).doNothing())
      .executeTakeFirst();
    return Number(inserted.numInsertedOrUpdatedRows ?? 0n) === 1;
  }

  async find(trx: Queryable, userId: string, key: string): Promise<IdempotencyRow | undefined> {
    return trx
      .selectFrom('idempotency_keys')
      .selectAll()
      .where('user_id', '=', userId)
      .where('key', '=', key)
      .executeTakeFirst();
  }

  /** Stores the response of a claim still in flight; false when there is no such claim. */
  async complete(
    trx: Queryable,
    userId: string,
    key: string,
    done: Pick<IdempotencyRow, 'response_status' | 'response_body' | 'expires_at'>,
  ): Promise<boolean> {
    const r = await trx
      .updateTable('idempotency_keys')
      .set({
        status: 'done',
        response_status: done.response_status,
        response_body: done.response_body,
        expires_at: done.expires_at,
      })
      .where('user_id', '=', userId)
      .where('key', '=', key)
      .where('status', '=', 'in_flight')
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** Deletes every row expired at `now`; returns how many. */
  async pruneExpired(now: number): Promise<number> {
    const r = await this.db.deleteFrom('idempotency_keys').where('expires_at', '<=', now).executeTakeFirst();
    return Number(r.numDeletedRows);
  }
}
