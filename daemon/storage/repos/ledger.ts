import type { Selectable, SelectQueryBuilder } from 'kysely';
import { reachFilter, type Reach } from '../../policies/index.js';
import type { Database, PreparedRead, Queryable } from '../database.js';
import type { DB } from '../schema.js';
import type { CreditTables, ReservationStatus } from '../tables/credits.js';

export type AccountRow = Selectable<CreditTables['credit_accounts']>;
export type EntryRow = Selectable<CreditTables['credit_ledger']>;
export type ReservationRow = Selectable<CreditTables['credit_reservations']>;

type TenantTable = 'credit_accounts' | 'credit_ledger' | 'credit_reservations';

/** A read of a credit table restricted to a reach (daemon/policies), in SQL. */
function withinReach<Q extends SelectQueryBuilder<DB, TenantTable, object>>(q: Q, reach: Reach): Q {
  const f = reachFilter(reach);
  return (f ? q.where(f.column, '=', f.value) : q) as Q;
}

/**
 * The credit ledger's tables: accounts, entries and reservations
 * (daemon/credits/ledger.ts holds the rules). Methods that take `t` run in the
 * caller's transaction, which owns the locks and the commit; the others read
 * outside any transaction. Locks are FOR NO KEY UPDATE on Postgres (SQLite's
 * write lock already serializes writers).
 */
export class LedgerRepository {
  /** A user's own balance, the hot read: compiled once, kept in memory until the next credit write (by any daemon). */
  private readonly ownBalanceRead: PreparedRead<{ userId: string }, Pick<AccountRow, 'balance' | 'reserved'>>;

  constructor(private readonly database: Database) {
    this.ownBalanceRead = database.prepareRead(
      (db, p: { userId: string }) =>
        db.selectFrom('credit_accounts').select(['balance', 'reserved']).where('user_id', '=', p.userId),
      { cache: { tables: ['credit_accounts'], ttlMs: 1000, maxEntries: 10_000 } },
    );
  }

  // -- accounts ----------------------------------------------------------------

  /**
   * Reads the user's account and locks it for the rest of `t`. NO KEY UPDATE:
   * serializes writers of the account, yet lets foreign-key checks of rows that
   * reference it (ledger entries, reservations) through, so they cannot deadlock with it.
   */
  async lockAccount(t: Queryable, userId: string): Promise<AccountRow | undefined> {
    const q = t.selectFrom('credit_accounts').selectAll().where('user_id', '=', userId);
    return (this.database.dialect === 'postgres' ? q.forNoKeyUpdate() : q).executeTakeFirst();
  }

  /** The user an account is created for: its id and tenant. */
  async accountHolder(t: Queryable, userId: string): Promise<{ id: string; tenant_id: string | null } | undefined> {
    return t.selectFrom('users').select(['id', 'tenant_id']).where('id', '=', userId).executeTakeFirst();
  }

  /** Creates an empty account; race-safe (ON CONFLICT DO NOTHING: a concurrent insert wins quietly). */
  async createAccount(t: Queryable, user: { id: string; tenant_id: string | null }, now: number): Promise<void> {
    await t
      .insertInto('credit_accounts')
      .values({ user_id: user.id, tenant_id: user.tenant_id, balance: 0, reserved: 0, updated_at: now, version: 0 })
      .onConflict((oc) => oc.column('user_id').doNothing())
      .execute();
  }

  /**
   * Writes the locked account back after its entries, only if its version moved
   * forward; returns the rows written (1, or 0 when a missed lock let another writer in).
   */
  async saveAccount(t: Queryable, account: AccountRow, now: number): Promise<number> {
    const saved = await t
      .updateTable('credit_accounts')
      .set({ balance: account.balance, reserved: account.reserved, version: account.version, updated_at: now })
      .where('user_id', '=', account.user_id)
      .where('version', '<', account.version)
      .executeTakeFirst();
    return Number(saved.numUpdatedRows);
  }

  /** A user's own balance (the prepared, cached read); in `trx` when given. */
  ownBalance(userId: string, trx?: Queryable): Promise<Pick<AccountRow, 'balance' | 'reserved'> | undefined> {
    return this.ownBalanceRead.first({ userId }, trx);
  }

  /** A user's account within `reach`; in `trx` when given. */
  async accountWithin(userId: string, reach: Reach, trx?: Queryable): Promise<AccountRow | undefined> {
    return withinReach(
      (trx ?? this.database.db).selectFrom('credit_accounts').selectAll().where('user_id', '=', userId),
      reach,
    ).executeTakeFirst();
  }

  // -- entries -----------------------------------------------------------------

  async insertEntry(t: Queryable, row: EntryRow): Promise<void> {
    await t.insertInto('credit_ledger').values(row).execute();
  }

  /** The user's entry recorded with an idempotency key, if any (unique per user). */
  keyedEntry(t: Queryable, userId: string, key: string): Promise<EntryRow | undefined> {
    return t
      .selectFrom('credit_ledger')
      .selectAll()
      .where('user_id', '=', userId)
      .where('idempotency_key', '=', key)
      .executeTakeFirst();
  }

  /** What the session's refunds gave back so far (a bigint sum, as the driver returns it). */
  async refundedTotal(t: Queryable, userId: string, sessionId: string): Promise<{ total: number }> {
    return t
      .selectFrom('credit_ledger')
      .select((eb) => eb.cast<number>(eb.fn.coalesce(eb.fn.sum<number>('amount'), eb.lit(0)), 'bigint').as('total'))
      .where('user_id', '=', userId)
      .where('kind', '=', 'refund')
      .where('session_id', '=', sessionId)
      .executeTakeFirstOrThrow();
  }

  /** A page of the user's entries, newest first: `limit` rows with seq below `before` (when given), within `reach`. */
  async entries(userId: string, options: { limit: number; before: number | null; reach: Reach }): Promise<EntryRow[]> {
    let q = this.database.db
      .selectFrom('credit_ledger')
      .selectAll()
      .where('user_id', '=', userId)
      .orderBy('seq', 'desc')
      .limit(options.limit);
    if (options.before !== null) q = q.where('seq', '<', options.before);
    return withinReach(q, options.reach).execute();
  }

  // -- reservations ------------------------------------------------------------

  async insertReservation(t: Queryable, row: ReservationRow): Promise<void> {
    await t.insertInto('credit_reservations').values(row).execute();
  }

  /** Whose a reservation is, without a lock (the lock order is account first). */
  async reservationOwner(t: Queryable, reservationId: string): Promise<{ user_id: string } | undefined> {
    return t.selectFrom('credit_reservations').select('user_id').where('id', '=', reservationId).executeTakeFirst();
  }

  /** Reads the reservation and locks it for the rest of `t` (after its account). */
  async lockReservation(t: Queryable, reservationId: string): Promise<ReservationRow | undefined> {
    const q = t.selectFrom('credit_reservations').selectAll().where('id', '=', reservationId);
    return (this.database.dialect === 'postgres' ? q.forNoKeyUpdate() : q).executeTakeFirst();
  }

  async setReservationExpiry(t: Queryable, reservationId: string, expiresAt: number): Promise<void> {
    await t.updateTable('credit_reservations').set({ expires_at: expiresAt }).where('id', '=', reservationId).execute();
  }

  /** Ends an open reservation; returns the rows changed (0 when it was no longer open). */
  async finishReservation(
    t: Queryable,
    reservationId: string,
    change: { status: Exclude<ReservationStatus, 'open'>; charged: number; settledAt: number },
  ): Promise<number> {
    const updated = await t
      .updateTable('credit_reservations')
      .set({ status: change.status, charged: change.charged, settled_at: change.settledAt })
      .where('id', '=', reservationId)
      .where('status', '=', 'open')
      .executeTakeFirst();
    return Number(updated.numUpdatedRows);
  }

  /** A batch of open reservations whose lease ran out by `now`, in id order after `after`. */
  async expiredReservations(
    now: number,
    after: string,
    limit: number,
  ): Promise<Array<{ id: string; session_id: string | null }>> {
    return this.database.db
      .selectFrom('credit_reservations')
      .select(['id', 'session_id'])
      .where('status', '=', 'open')
      .where('expires_at', '<=', now)
      .where('id', '>', after)
      .orderBy('id')
      .limit(limit)
      .execute();
  }

  /** One reservation (of `userId` when given) within `reach`. */
  async findReservation(
    reservationId: string,
    options: { userId?: string; reach: Reach },
  ): Promise<ReservationRow | undefined> {
    let q = this.database.db.selectFrom('credit_reservations').selectAll().where('id', '=', reservationId);
    if (options.userId !== undefined) q = q.where('user_id', '=', options.userId);
    return withinReach(q, options.reach).executeTakeFirst();
  }

  /** The reservations of a session (or its own reservation id) of the user, oldest first. */
  async sessionReservations(
    t: Queryable,
    userId: string,
    sessionId: string,
    reservationId: string | null,
  ): Promise<ReservationRow[]> {
    return t
      .selectFrom('credit_reservations')
      .selectAll()
      .where('user_id', '=', userId)
      .where((eb) => eb.or([eb('session_id', '=', sessionId), eb('id', '=', reservationId)]))
      .orderBy('created_at')
      .orderBy('id')
      .execute();
  }

  /** How many reservations are open and what they hold, over all daemons (the metrics' gauges). */
  async openReservationTotals(): Promise<{ n: number; total: number }> {
    const row = await this.database.db
      .selectFrom('credit_reservations')
      .select((eb) => [
        eb.fn.countAll<number>().as('n'),
        eb.cast<number>(eb.fn.coalesce(eb.fn.sum<number>('amount'), eb.lit(0)), 'bigint').as('total'),
      ])
      .where('status', '=', 'open')
      .executeTakeFirstOrThrow();
    return { n: Number(row.n), total: Number(row.total) };
  }

  // -- sessions, as the ledger sees them -----------------------------------------

  /** A session's user and reservation (who to lock for a refund). */
  async sessionOwner(
    t: Queryable,
    sessionId: string,
  ): Promise<{ user_id: string; reservation_id: string | null } | undefined> {
    return t
      .selectFrom('sessions')
      .select(['user_id', 'reservation_id'])
      .where('id', '=', sessionId)
      .executeTakeFirst();
  }

  /** A session's status, read under its user's account lock. */
  async sessionStatus(t: Queryable, sessionId: string): Promise<{ status: string }> {
    return t.selectFrom('sessions').select(['status']).where('id', '=', sessionId).executeTakeFirstOrThrow();
  }
}
