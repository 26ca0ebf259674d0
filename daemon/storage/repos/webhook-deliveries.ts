import type { Insertable, Selectable } from 'kysely';
import type { Database, Queryable } from '../database.js';
import type { WebhookTables } from '../tables/webhooks.js';

export type DeliveryRow = Selectable<WebhookTables['webhook_deliveries']>;
export type AttemptRow = Selectable<WebhookTables['webhook_attempts']>;
export type NewDelivery = Omit<
  DeliveryRow,
  'status' | 'attempts' | 'last_status_code' | 'last_error' | 'delivered_at' | 'resends' | 'endpoint_id'
> & {
  endpoint_id?: string | null;
};

export interface ClaimArgs {
  now: number;
  limit: number;
  leaseMs: number;
  maxAttempts: number;
  /** Ids already handled in this pass. */
  exclude: string[];
}

/** What an attempt's outcome writes back. */
export type DeliveryUpdate = Partial<
  Pick<DeliveryRow, 'status' | 'next_attempt_at' | 'last_status_code' | 'last_error' | 'delivered_at' | 'updated_at'>
>;

/**
 * The `webhook_deliveries` table (the outbox) and its `webhook_attempts` log:
 * insert, claim, record, and the reads of the delivery log. Claims are atomic on
 * both dialects and fenced by the attempt number, so two workers never run the
 * same attempt and a worker whose claim lapsed cannot overwrite its successor.
 * On Postgres a claim is two statements in a transaction of its own (see
 * `claimPostgres`): the one place a repository opens a transaction itself.
 */
export class WebhookOutbox {
  constructor(private readonly database: Database) {}

  /** Inserts a pending delivery, in `trx` when given (the caller's transaction). */
  async insert(row: NewDelivery, trx?: Queryable): Promise<void> {
    await (trx ?? this.database.db)
      .insertInto('webhook_deliveries')
      .values({
        endpoint_id: null,
        ...row,
        status: 'pending',
        attempts: 0,
        resends: 0,
        last_status_code: null,
        last_error: null,
        delivered_at: null,
      })
      .execute();
  }

  /**
   * Claims up to `limit` deliveries that are due at `now`: pending ones whose
   * time has come, and delivering ones whose claim lapsed (their worker died).
   * A claim counts the attempt and holds the row until `now + leaseMs`. The
   * update re-checks the due conditions, so a row is claimed by one worker only.
   */
  async claimDue(args: ClaimArgs): Promise<DeliveryRow[]> {
    return this.database.dialect === 'postgres' ? this.claimPostgres(args) : this.claimSqlite(args);
  }

  /**
   * Postgres: select the due ids FOR UPDATE SKIP LOCKED, then update them, in
   * one transaction, so concurrent workers pick disjoint rows without waiting
   * on each other. (Not one UPDATE ... WHERE id IN (SELECT ... LIMIT n FOR
   * UPDATE SKIP LOCKED): the planner may run that subquery more than once and
   * claim more than `limit` rows.)
   */
  private claimPostgres({ now, limit, leaseMs, maxAttempts, exclude }: ClaimArgs): Promise<DeliveryRow[]> {
    return this.database.transaction(async (trx) => {
      const due = await this.dueIds(trx, now, maxAttempts, exclude).limit(limit).forUpdate().skipLocked().execute();
      if (due.length === 0) return [];
      return this.claimUpdate(trx, now, leaseMs, maxAttempts)
        .where(
          'id',
          'in',
          due.map((d) => d.id),
        )
        .returningAll()
        .execute();
    });
  }

  /**
   * SQLite: one UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING, atomic
   * under the single write lock and never holding it across an await (a second
   * connection in the same process would otherwise block the event loop in
   * its busy wait).
   */
  private claimSqlite({ now, limit, leaseMs, maxAttempts, exclude }: ClaimArgs): Promise<DeliveryRow[]> {
    const db = this.database.db;
    return this.claimUpdate(db, now, leaseMs, maxAttempts)
      .where('id', 'in', this.dueIds(db, now, maxAttempts, exclude).limit(limit))
      .returningAll()
      .execute();
  }

  private dueIds(q: Queryable, now: number, maxAttempts: number, exclude: string[]) {
    return q
      .selectFrom('webhook_deliveries')
      .select('id')
      .where('status', 'in', ['pending', 'delivering'])
      .where('next_attempt_at', '<=', now)
      .where((eb) => eb('attempts', '<', eb('resends', '+', maxAttempts)))
      .$if(exclude.length > 0, (s) => s.where('id', 'not in', exclude))
      .orderBy('next_attempt_at');
  }

  private claimUpdate(q: Queryable, now: number, leaseMs: number, maxAttempts: number) {
    return q
      .updateTable('webhook_deliveries')
      .set((eb) => ({
        status: 'delivering' as const,
        attempts: eb('attempts', '+', 1),
        next_attempt_at: now + leaseMs,
        updated_at: now,
      }))
      .where('status', 'in', ['pending', 'delivering'])
      .where('next_attempt_at', '<=', now)
      .where((eb) => eb('attempts', '<', eb('resends', '+', maxAttempts)));
  }

  /**
   * Fails deliveries that used up their attempts without an outcome: the last
   * claim lapsed (the worker died mid-attempt) or the limit was lowered.
   */
  async failExhausted(now: number, maxAttempts: number): Promise<number> {
    const r = await this.database.db
      .updateTable('webhook_deliveries')
      .set({ status: 'failed', last_error: 'abandoned: the last attempt did not report an outcome', updated_at: now })
      .where('status', 'in', ['pending', 'delivering'])
      .where('next_attempt_at', '<=', now)
      .where((eb) => eb('attempts', '>=', eb('resends', '+', maxAttempts)))
      .executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  /** Writes an attempt's outcome; false when the claim was lost (lapsed and taken over). */
  async record(id: string, attempt: number, update: DeliveryUpdate, trx?: Queryable): Promise<boolean> {
    const r = await (trx ?? this.database.db)
      .updateTable('webhook_deliveries')
      .set(update)
      .where('id', '=', id)
      .where('status', '=', 'delivering')
      .where('attempts', '=', attempt)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** Logs an attempt (once: a second record of the same attempt is ignored). */
  async insertAttempt(trx: Queryable, row: Insertable<WebhookTables['webhook_attempts']>): Promise<void> {
    await trx
      .insertInto('webhook_attempts')
      .values(row)
      .onConflict((oc) => oc.columns(['delivery_id', 'attempt']).doNothing())
      .execute();
  }

  /** An endpoint's deliveries, newest first: `limit` rows before `cursor`, of one `status` when given. */
  async listForEndpoint(
    endpointId: string,
    options: { limit: number; cursor?: string | null; status?: DeliveryRow['status'] },
  ): Promise<DeliveryRow[]> {
    let q = this.database.db.selectFrom('webhook_deliveries').selectAll().where('endpoint_id', '=', endpointId);
    if (options.status) q = q.where('status', '=', options.status);
    if (options.cursor) q = q.where('id', '<', options.cursor);
    return q.orderBy('id', 'desc').limit(options.limit).execute();
  }

  async findForEndpoint(id: string, endpointId: string): Promise<DeliveryRow | undefined> {
    return this.database.db
      .selectFrom('webhook_deliveries')
      .selectAll()
      .where('id', '=', id)
      .where('endpoint_id', '=', endpointId)
      .executeTakeFirst();
  }

  /** The attempts of these deliveries, by delivery and attempt. */
  async attemptsOf(deliveryIds: string[]): Promise<AttemptRow[]> {
    return this.database.db
      .selectFrom('webhook_attempts')
      .selectAll()
      .where('delivery_id', 'in', deliveryIds)
      .orderBy('delivery_id')
      .orderBy('attempt')
      .execute();
  }

  /** Fails the pending deliveries of an endpoint being deleted. */
  async failPendingOf(trx: Queryable, endpointId: string, now: number): Promise<void> {
    await trx
      .updateTable('webhook_deliveries')
      .set({ status: 'failed', last_error: 'endpoint deleted', updated_at: now })
      .where('endpoint_id', '=', endpointId)
      .where('status', '=', 'pending')
      .execute();
  }

  /** Queues a finished (delivered or failed) delivery again, with one more attempt; false when it is not finished. */
  async resend(trx: Queryable, id: string, now: number): Promise<boolean> {
    const r = await trx
      .updateTable('webhook_deliveries')
      .set((eb) => ({
        status: 'pending' as const,
        next_attempt_at: now,
        resends: eb('resends', '+', 1),
        updated_at: now,
      }))
      .where('id', '=', id)
      .where('status', 'in', ['delivered', 'failed'])
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }
}
