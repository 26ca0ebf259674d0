import type { Database, Queryable } from '../database.js';
import type { ApiKeyRow } from './credentials.js';

/**
 * The `api_key.expiring` notice's claim on `api_keys` (daemon/webhooks/key-expiry.ts):
 * which live keys expire soon and were not announced, and the one-time claim.
 */
export class ApiKeyExpiryRepository {
  private readonly db: Queryable;

  constructor(database: Pick<Database, 'db'>) {
    this.db = database.db;
  }

  /** Live keys expiring in (`now`, `until`] not announced yet, soonest first. */
  async dueForNotice(now: number, until: number, limit: number): Promise<ApiKeyRow[]> {
    return this.db
      .selectFrom('api_keys')
      .selectAll()
      .where('revoked_at', 'is', null)
      .where('expiry_notified_at', 'is', null)
      .where('expires_at', '>', now)
      .where('expires_at', '<=', until)
      .orderBy('expires_at')
      .limit(limit)
      .execute();
  }

  /** Marks the key announced at `now` if no one did; true when this call did. */
  async claimNotice(trx: Queryable, id: string, now: number): Promise<boolean> {
    const r = await trx
      .updateTable('api_keys')
      .set({ expiry_notified_at: now })
      .where('id', '=', id)
      .where('expiry_notified_at', 'is', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }
}
