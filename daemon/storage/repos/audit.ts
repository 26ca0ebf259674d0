import { sql, type Selectable } from 'kysely';
import { reachFilter, type Reach } from '../../policies/index.js';
import type { Database, Dialect, Queryable } from '../database.js';
import type { AuditTables } from '../tables/audit.js';

export type AuditLogRow = Selectable<AuditTables['audit_log']>;
export type AuditArchiveRow = Selectable<AuditTables['audit_archive']>;

export interface AuditFilters {
  /**
   * An action (`auth.login`), or a resource prefix: `auth` or `auth.*` matches
   * every `auth.` action.
   */
  action?: string | null;
  /** Entries this actor did. */
  actorId?: string | null;
  /** Entries a user did or that were done to the user (actor, or target of type `user`). */
  userId?: string | null;
  /** Within every entry: one tenant's entries. Within a tenant's reach it can only narrow further. */
  tenantId?: string | null;
  outcome?: AuditLogRow['outcome'] | null;
  /** Epoch ms, inclusive. */
  since?: number | null;
  /** Epoch ms, exclusive. */
  until?: number | null;
}

/**
 * The action filter as SQL sees it: `{ prefix }` for `auth` or `auth.*`, `{ exact }`
 * for `auth.login`. The caller (daemon/audit/query.ts) refuses an empty prefix first.
 */
export function actionMatch(action: string): { prefix: string } | { exact: string } {
  const a = action.trim();
  const prefix = a.endsWith('.*') ? a.slice(0, -2) : a.includes('.') ? null : a;
  return prefix !== null ? { prefix } : { exact: a };
}

/**
 * The audit tables: the hash-chained `audit_log`, its single head row
 * `audit_head` and the retention cuts in `audit_archive`. Every method reads
 * or writes in `q` when given (a transaction of `Database.transaction()`).
 */
export class AuditRepository {
  private readonly db: Queryable;
  private readonly dialect: Dialect;

  constructor(database: Pick<Database, 'db' | 'dialect'>) {
    this.db = database.db;
    this.dialect = database.dialect;
  }

  /** The last appended seq and hash (seq 0 and 64 zeros before the first entry). */
  async head(q: Queryable = this.db): Promise<{ seq: number; hash: string }> {
    const row = await q
      .selectFrom('audit_head')
      .select(['seq', 'hash'])
      .where('id', '=', 'chain')
      .executeTakeFirstOrThrow();
    return { seq: Number(row.seq), hash: row.hash };
  }

  /**
   * Reads the head in `trx` and holds it until the transaction ends: FOR NO KEY
   * UPDATE on Postgres; on SQLite `Database.transaction()` already holds the
   * write lock. Every append takes it (see daemon/audit/store.ts).
   */
  async lockHead(trx: Queryable): Promise<{ seq: number; hash: string }> {
    let headQuery = trx.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 'chain');
    if (this.dialect === 'postgres') headQuery = headQuery.forNoKeyUpdate();
    const head = await headQuery.executeTakeFirstOrThrow();
    return { seq: Number(head.seq), hash: head.hash };
  }

  /** The same lock as {@link lockHead}, reading the seq only: how retention takes turns with appends. */
  async lockHeadSeq(trx: Queryable): Promise<number> {
    let head = trx.selectFrom('audit_head').select('seq').where('id', '=', 'chain');
    if (this.dialect === 'postgres') head = head.forNoKeyUpdate();
    const row = await head.executeTakeFirstOrThrow();
    return Number(row.seq);
  }

  async insertEntry(trx: Queryable, row: AuditLogRow): Promise<void> {
    await trx.insertInto('audit_log').values(row).execute();
  }

  /**
   * Compare-and-set of the head: moves it to `to` only if it is still at
   * `fromSeq`. False when it moved (a concurrent append on a handle that was
   * not really a transaction).
   */
  async moveHead(trx: Queryable, fromSeq: number, to: { seq: number; hash: string }): Promise<boolean> {
    const moved = await trx
      .updateTable('audit_head')
      .set({ seq: to.seq, hash: to.hash })
      .where('id', '=', 'chain')
      .where('seq', '=', fromSeq)
      .executeTakeFirst();
    return Number(moved.numUpdatedRows) === 1;
  }

  /**
   * Entries inside `reach` matching `filters`, unordered and unlimited: the
   * caller adds the seq bound, order and limit. Filters are checked by the caller.
   */
  filtered(reach: Reach, filters: AuditFilters) {
    let q = this.db.selectFrom('audit_log').selectAll();
    const f = reachFilter(reach);
    if (f?.column === 'tenant_id') q = q.where('tenant_id', '=', f.value);
    else if (f) {
      const userId = f.value;
      q = q.where((eb) =>
        eb.or([eb('actor_id', '=', userId), eb.and([eb('target_type', '=', 'user'), eb('target_id', '=', userId)])]),
      );
    }
    if (filters.tenantId) q = q.where('tenant_id', '=', filters.tenantId);
    if (filters.action) {
      const match = actionMatch(filters.action);
      if ('prefix' in match) {
        // LIKE with an explicit escape character: the same on both dialects
        // (a range would depend on Postgres's collation).
        const pattern = `${match.prefix.replace(/[!%_]/g, (c) => `!${c}`)}.%`;
        q = q.where(sql<boolean>`${sql.ref('action')} like ${pattern} escape '!'`);
      } else {
        q = q.where('action', '=', match.exact);
      }
    }
    if (filters.actorId) q = q.where('actor_id', '=', filters.actorId);
    if (filters.userId) {
      const userId = filters.userId;
      q = q.where((eb) =>
        eb.or([eb('actor_id', '=', userId), eb.and([eb('target_type', '=', 'user'), eb('target_id', '=', userId)])]),
      );
    }
    if (filters.outcome) q = q.where('outcome', '=', filters.outcome);
    // With an actor, the time is checked on each row (`+ts`, an expression no index serves): the
    // `(actor_id, ts, seq)` index would otherwise be chosen for a one-sided window and sort every
    // entry of the actor in it; the walk by `(actor_id, seq)` stops at the page's last row.
    const ts = filters.actorId ? sql<number>`+${sql.ref('ts')}` : sql.ref('ts');
    if (filters.since !== undefined && filters.since !== null) q = q.where(ts, '>=', filters.since);
    if (filters.until !== undefined && filters.until !== null) q = q.where(ts, '<', filters.until);
    return q;
  }

  /**
   * One page by seq: `limit` rows after (asc) or before (desc) `cursor`.
   *
   * An actor with a time window that has an end (`until`, with or without `since`) is first
   * turned into the seq range of that actor's entries in the window ({@link actorSeqRange},
   * from the `(actor_id, ts, seq)` index alone); the page then walks by seq inside it
   * (`(actor_id, seq)` on SQLite; Postgres picks that index or the seq key from its
   * statistics), the window still checked on each row. Without the range a page, newest
   * first, walks past every entry of the actor newer than the window (2.2 s at 100,000
   * entries). A window open at the end is walked from the newest, as before. The range is
   * exact whatever the clocks did (times need not grow with seq): it is the lowest and
   * highest seq of the entries the window holds, not a guess from the times.
   */
  async page(
    reach: Reach,
    filters: AuditFilters,
    page: { cursor: number | null; order: 'asc' | 'desc'; limit: number },
  ): Promise<AuditLogRow[]> {
    const { actorId, since, until } = filters;
    let q;
    if (actorId && until !== undefined && until !== null) {
      const from = since ?? null;
      const range = await this.actorSeqRange(actorId, from, until);
      if (!range) return [];
      // Here the time is compared on the column: Postgres then knows from its statistics how
      // much of the range the window holds (its default guess for `+ts` is 0.5%) and walks.
      q = this.filtered(reach, { ...filters, since: null, until: null }).where('ts', '<', until);
      if (from !== null) q = q.where('ts', '>=', from);
      q = q.where('seq', '>=', range.first).where('seq', '<=', range.last);
    } else {
      q = this.filtered(reach, filters);
    }
    if (page.cursor !== null) q = q.where('seq', page.order === 'desc' ? '<' : '>', page.cursor);
    return q.orderBy('seq', page.order).limit(page.limit).execute();
  }

  /**
   * The lowest and highest seq of `actorId`'s entries with `since` (when given) <= ts < `until`;
   * null when none. Read from the `(actor_id, ts, seq)` index alone. `seq + 0`: Postgres would otherwise
   * answer min and max by walking the seq index from each end until a row matches.
   */
  async actorSeqRange(
    actorId: string,
    since: number | null,
    until: number,
  ): Promise<{ first: number; last: number } | null> {
    const seq = sql<number>`${sql.ref('seq')} + 0`;
    let q = this.db
      .selectFrom('audit_log')
      .select((eb) => [eb.fn.min(seq).as('first'), eb.fn.max(seq).as('last')])
      .where('actor_id', '=', actorId)
      .where('ts', '<', until);
    if (since !== null) q = q.where('ts', '>=', since);
    const row = await q.executeTakeFirst();
    if (!row || row.first === null || row.last === null) return null;
    return { first: Number(row.first), last: Number(row.last) };
  }

  /** Up to `limit` entries with seq greater than `afterSeq`, oldest first. */
  async after(reach: Reach, filters: AuditFilters, afterSeq: number, limit: number): Promise<AuditLogRow[]> {
    return this.filtered(reach, filters).where('seq', '>', afterSeq).orderBy('seq', 'asc').limit(limit).execute();
  }

  /** The id of the entry at `seq`, while it is in the table. */
  async entryIdAt(seq: number): Promise<string | null> {
    const row = await this.db.selectFrom('audit_log').select('id').where('seq', '=', seq).executeTakeFirst();
    return row?.id ?? null;
  }

  /** The entry at `seq` as a checkpoint compares it, while it is in the table. */
  async entryAt(seq: number): Promise<{ id: string; hash: string; prev_hash: string } | undefined> {
    return this.db
      .selectFrom('audit_log')
      .select(['id', 'hash', 'prev_hash'])
      .where('seq', '=', seq)
      .executeTakeFirst();
  }

  // Retention.

  /** The first and last seq in the table; null when it is empty. */
  async bounds(): Promise<{ first: number; last: number } | null> {
    const bounds = await this.db
      .selectFrom('audit_log')
      .select((eb) => [eb.fn.min('seq').as('first'), eb.fn.max('seq').as('last')])
      .executeTakeFirst();
    if (!bounds || bounds.first === null || bounds.last === null) return null;
    return { first: Number(bounds.first), last: Number(bounds.last) };
  }

  /** The lowest seq of an entry written at or after `ts`; null when there is none. */
  async firstSeqSince(ts: number): Promise<number | null> {
    const young = await this.db
      .selectFrom('audit_log')
      .select((eb) => eb.fn.min('seq').as('seq'))
      .where('ts', '>=', ts)
      .executeTakeFirst();
    return young?.seq !== null && young?.seq !== undefined ? Number(young.seq) : null;
  }

  /** Up to `limit` entries with `after` < seq <= `last`, oldest first. */
  async range(after: number, last: number, limit: number): Promise<AuditLogRow[]> {
    return this.db
      .selectFrom('audit_log')
      .selectAll()
      .where('seq', '>', after)
      .where('seq', '<=', last)
      .orderBy('seq', 'asc')
      .limit(limit)
      .execute();
  }

  async insertArchive(trx: Queryable, row: AuditArchiveRow): Promise<void> {
    await trx.insertInto('audit_archive').values(row).execute();
  }

  /** Deletes the entries `first`..`last`; returns how many were deleted. */
  async deleteRange(trx: Queryable, first: number, last: number): Promise<bigint> {
    const deleted = await trx
      .deleteFrom('audit_log')
      .where('seq', '>=', first)
      .where('seq', '<=', last)
      .executeTakeFirst();
    return deleted.numDeletedRows;
  }

  /** The archive file of the cut that starts at `firstSeq`, if one was recorded. */
  async archiveStartingAt(firstSeq: number): Promise<{ file: string } | undefined> {
    return this.db.selectFrom('audit_archive').select('file').where('first_seq', '=', firstSeq).executeTakeFirst();
  }

  /** Every retention cut, oldest first. */
  async archives(): Promise<AuditArchiveRow[]> {
    return this.db.selectFrom('audit_archive').selectAll().orderBy('first_seq', 'asc').execute();
  }
}
