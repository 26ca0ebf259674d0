import type { Database, Queryable } from '../database.js';
import type { BudgetPeriod, BudgetSubject } from '../tables/credits.js';

/** A budget as stored (bigint columns may come back as strings on Postgres). */
export interface BudgetRow {
  subject_type: BudgetSubject;
  subject_id: string;
  tenant_id: string | null;
  amount: number | string;
  period: BudgetPeriod;
  set_by: 'owner' | 'tenant_admin' | 'platform_admin';
  created_at: number | string;
  updated_at: number | string;
}

/** A budget to store. */
export type NewBudget = { [K in keyof BudgetRow]: Exclude<BudgetRow[K], string> | Extract<BudgetRow[K], string> } & {
  amount: number;
  created_at: number;
  updated_at: number;
};

/** One window of a budget: the subject and the window's start. */
export interface WindowKey {
  subject: BudgetSubject;
  subjectId: string;
  start: number;
}

const RESERVATION_COLUMN = { api_key: 'api_key_id', user: 'user_id', tenant: 'tenant_id' } as const;

/**
 * Budgets and their windows (daemon/credits/budgets.ts holds the rules). Every
 * method runs on the `q` it is given: the reserving or the caller's transaction,
 * or the database for a plain read. A window is locked FOR UPDATE on Postgres.
 */
export class BudgetRepository {
  /** The database itself: the `q` of a plain read, outside any transaction. */
  readonly reads: Queryable;

  constructor(private readonly database: Database) {
    this.reads = database.db;
  }

  /** The budget of one subject, if any. */
  async find(q: Queryable, subject: BudgetSubject, subjectId: string): Promise<BudgetRow | undefined> {
    return q
      .selectFrom('budgets')
      .selectAll()
      .where('subject_type', '=', subject)
      .where('subject_id', '=', subjectId)
      .executeTakeFirst();
  }

  /** The budgets of the given subjects. */
  async findMany(q: Queryable, subjects: ReadonlyArray<{ subject: BudgetSubject; id: string }>): Promise<BudgetRow[]> {
    if (subjects.length === 0) return [];
    return (await q
      .selectFrom('budgets')
      .selectAll()
      .where((eb) =>
        eb.or(subjects.map((s) => eb.and([eb('subject_type', '=', s.subject), eb('subject_id', '=', s.id)]))),
      )
      .execute()) as BudgetRow[];
  }

  /**
   * A page of budget subjects in (subject, id) order: `limit` rows after the
   * `after` cursor, of one tenant and one subject type when given.
   */
  async listSubjects(options: {
    limit: number;
    tenantId?: string;
    subject?: BudgetSubject;
    after?: [BudgetSubject, string];
  }): Promise<Array<{ subject_type: BudgetSubject; subject_id: string }>> {
    let q = this.database.db.selectFrom('budgets').select(['subject_type', 'subject_id']);
    if (options.tenantId !== undefined) q = q.where('tenant_id', '=', options.tenantId);
    if (options.subject !== undefined) q = q.where('subject_type', '=', options.subject);
    if (options.after) {
      const [t, id] = options.after;
      q = q.where((eb) =>
        eb.or([eb('subject_type', '>', t), eb.and([eb('subject_type', '=', t), eb('subject_id', '>', id)])]),
      );
    }
    return q.orderBy('subject_type').orderBy('subject_id').limit(options.limit).execute();
  }

  async insert(q: Queryable, row: NewBudget): Promise<void> {
    await q.insertInto('budgets').values(row).execute();
  }

  async update(
    q: Queryable,
    subject: BudgetSubject,
    subjectId: string,
    patch: Pick<NewBudget, 'amount' | 'period' | 'set_by' | 'updated_at'>,
  ): Promise<void> {
    await q
      .updateTable('budgets')
      .set({ amount: patch.amount, period: patch.period, set_by: patch.set_by, updated_at: patch.updated_at })
      .where('subject_type', '=', subject)
      .where('subject_id', '=', subjectId)
      .execute();
  }

  /** Removes a subject's budget and its windows. */
  async remove(q: Queryable, subject: BudgetSubject, subjectId: string): Promise<void> {
    await q
      .deleteFrom('budget_windows')
      .where('subject_type', '=', subject)
      .where('subject_id', '=', subjectId)
      .execute();
    await q.deleteFrom('budgets').where('subject_type', '=', subject).where('subject_id', '=', subjectId).execute();
  }

  /** A window's use, without a lock; undefined when the window has no row yet. */
  async windowUsed(q: Queryable, w: WindowKey): Promise<{ used: number | string } | undefined> {
    return q
      .selectFrom('budget_windows')
      .select('used')
      .where('subject_type', '=', w.subject)
      .where('subject_id', '=', w.subjectId)
      .where('window_start', '=', w.start)
      .executeTakeFirst();
  }

  /** Reads a window and locks it for the rest of `t`; undefined when it has no row yet. */
  async lockWindow(
    t: Queryable,
    w: WindowKey,
  ): Promise<{ used: number | string; notified_pct: number | string } | undefined> {
    const q = t
      .selectFrom('budget_windows')
      .select(['used', 'notified_pct'])
      .where('subject_type', '=', w.subject)
      .where('subject_id', '=', w.subjectId)
      .where('window_start', '=', w.start);
    return (this.database.dialect === 'postgres' ? q.forUpdate() : q).executeTakeFirst();
  }

  /** Creates a window's row; race-safe (ON CONFLICT DO NOTHING: a concurrent insert wins quietly). */
  async createWindow(t: Queryable, w: WindowKey, used: number, now: number): Promise<void> {
    await t
      .insertInto('budget_windows')
      .values({
        subject_type: w.subject,
        subject_id: w.subjectId,
        window_start: w.start,
        used,
        notified_pct: 0,
        updated_at: now,
      })
      .onConflict((oc) => oc.columns(['subject_type', 'subject_id', 'window_start']).doNothing())
      .execute();
  }

  /** Sets a locked window's use (and the threshold last announced, when given). */
  async setWindowUsed(t: Queryable, w: WindowKey, used: number, now: number, notifiedPct?: number): Promise<void> {
    await t
      .updateTable('budget_windows')
      .set({ used, updated_at: now, ...(notifiedPct !== undefined ? { notified_pct: notifiedPct } : {}) })
      .where('subject_type', '=', w.subject)
      .where('subject_id', '=', w.subjectId)
      .where('window_start', '=', w.start)
      .execute();
  }

  /** Takes `unused` off a window's use, unless that would make it negative (a window gone is skipped). */
  async giveBack(t: Queryable, w: WindowKey, unused: number, now: number): Promise<void> {
    await t
      .updateTable('budget_windows')
      .set((eb) => ({ used: eb('used', '-', unused), updated_at: now }))
      .where('subject_type', '=', w.subject)
      .where('subject_id', '=', w.subjectId)
      .where('window_start', '=', w.start)
      .where('used', '>=', unused)
      .execute();
  }

  /**
   * What the subject's reservations made in [start, end) hold (open) or charged
   * (the rest): a window's use before it had a row.
   */
  async reservedSince(
    q: Queryable,
    subject: BudgetSubject,
    subjectId: string,
    start: number,
    end: number | null,
  ): Promise<number> {
    let query = q
      .selectFrom('credit_reservations')
      .select((eb) =>
        eb.fn
          .coalesce(
            eb.fn.sum<number | string>(
              eb.case().when('status', '=', 'open').then(eb.ref('amount')).else(eb.ref('charged')).end(),
            ),
            eb.lit(0),
          )
          .as('used'),
      )
      .where(RESERVATION_COLUMN[subject], '=', subjectId)
      .where('created_at', '>=', start);
    if (end !== null) query = query.where('created_at', '<', end);
    const row = await query.executeTakeFirstOrThrow();
    return Number(row.used);
  }
}
