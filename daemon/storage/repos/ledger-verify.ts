import { sql } from 'kysely';
import type { Queryable } from '../database.js';
import type { EntryRow } from './ledger.js';
import type { PoolEntryRow } from './pools.js';

/**
 * One account of a page of `credits verify`, summed in SQL: whether everything the
 * per-account check (CreditLedger.verify) looks at agrees. Only accounts that are not
 * `clean` are then checked one by one, under their lock, which finds the same
 * mismatches as before; a clean account is one that check would pass.
 */
/** Where a step of `accountInSteps` ended: the last entry's seq, balance_after and reserved_after. */
interface StepEnd {
  seq: number;
  balance: number;
  reserved: number;
}

export interface AccountSummary {
  userId: string;
  clean: boolean;
}

/**
 * The reads of `credits verify` over the whole ledger, page by page, so that its time
 * and memory stay bounded by the page, not the table.
 */
export class LedgerVerifyRepository {
  constructor(private readonly db: Queryable) {}

  /**
   * The next `limit` accounts after `after` (by user id), each with its ledger and open
   * reservations summed in one statement (one snapshot): balance = sum(amount),
   * reserved = sum(reserved_delta) = sum(open reservations), available >= 0, the seq
   * and balance_after / reserved_after chain entry by entry (window functions over the
   * (user_id, seq) index), version = last seq. An account with refunds is never
   * `clean` here: the refund-per-session check stays with the per-account check.
   */
  async accountPage(after: string | null, limit: number): Promise<AccountSummary[]> {
    let ids = this.db.selectFrom('credit_accounts').select('user_id').orderBy('user_id').limit(limit);
    if (after !== null) ids = ids.where('user_id', '>', after);
    const page = await ids.execute();
    if (page.length === 0) return [];
    const lo = page[0]!.user_id;
    const hi = page[page.length - 1]!.user_id;
    const { rows } = await sql<{
      user_id: string;
      balance: number | string;
      reserved: number | string;
      version: number | string;
      total: number | string;
      delta: number | string;
      last_seq: number | string;
      bad: number | string;
      refunds: number | string;
      open_total: number | string;
    }>`
      select a.user_id, a.balance, a.reserved, a.version,
        coalesce(l.total, 0) as total, coalesce(l.delta, 0) as delta, coalesce(l.last_seq, 0) as last_seq,
        coalesce(l.bad, 0) as bad, coalesce(l.refunds, 0) as refunds, coalesce(r.open_total, 0) as open_total
      from credit_accounts a
      left join (
        select user_id, sum(amount) as total, sum(reserved_delta) as delta, max(seq) as last_seq,
          sum(case when seq <> prev_seq + 1 or balance_after <> prev_balance + amount
            or reserved_after <> prev_reserved + reserved_delta or balance_after < reserved_after
            then 1 else 0 end) as bad,
          sum(case when kind = 'refund' then 1 else 0 end) as refunds
        from (
          select user_id, seq, kind, amount, reserved_delta, balance_after, reserved_after,
            coalesce(lag(seq) over w, 0) as prev_seq,
            coalesce(lag(balance_after) over w, 0) as prev_balance,
            coalesce(lag(reserved_after) over w, 0) as prev_reserved
          from credit_ledger
          where user_id >= ${lo} and user_id <= ${hi}
          window w as (partition by user_id order by seq)
        ) e
        group by user_id
      ) l on l.user_id = a.user_id
      left join (
        select user_id, sum(amount) as open_total from credit_reservations
        where status = 'open' and user_id >= ${lo} and user_id <= ${hi}
        group by user_id
      ) r on r.user_id = a.user_id
      where a.user_id >= ${lo} and a.user_id <= ${hi}
      order by a.user_id
    `.execute(this.db);
    return rows.map((r) => {
      const balance = Number(r.balance);
      const reserved = Number(r.reserved);
      const clean =
        Number(r.total) === balance &&
        Number(r.delta) === reserved &&
        Number(r.open_total) === reserved &&
        balance >= reserved &&
        Number(r.bad) === 0 &&
        Number(r.refunds) === 0 &&
        Number(r.last_seq) === Number(r.version);
      return { userId: r.user_id, clean };
    });
  }

  /**
   * The next `limit` accounts after `after` (by user id) with their version (their last seq:
   * how many entries they claim), for `verify()` to cut its pages by entries, not accounts.
   */
  async accountVersions(after: string | null, limit: number): Promise<Array<{ userId: string; version: number }>> {
    let q = this.db.selectFrom('credit_accounts').select(['user_id', 'version']).orderBy('user_id').limit(limit);
    if (after !== null) q = q.where('user_id', '>', after);
    const rows = await q.execute();
    return rows.map((r) => ({ userId: r.user_id, version: Number(r.version) }));
  }

  /**
   * One account summed as {@link accountPage} sums it, in statements of at most `step`
   * entries each (the next `step` entries by the `(user_id, seq)` index, the chain carried
   * from one statement to the next), calling `between()` after each: a 100,000-entry account
   * never holds the event loop (SQLite) for longer than one step. The account row is read
   * before and after: any write to the account in between moves its version, and the account
   * is then not `clean` (the check under the lock decides), so the steps see one state as
   * one statement would.
   */
  async accountInSteps(userId: string, step: number, between: () => Promise<void>): Promise<AccountSummary> {
    const account = () =>
      this.db
        .selectFrom('credit_accounts')
        .select(['balance', 'reserved', 'version'])
        .where('user_id', '=', userId)
        .executeTakeFirst();
    const before = await account();
    if (!before) return { userId, clean: false };
    const sums = { total: 0, delta: 0, lastSeq: 0, bad: 0, refunds: 0 };
    let prev: StepEnd | null = null;
    for (;;) {
      const part = await this.stepSums(userId, prev, step);
      sums.total += part.total;
      sums.delta += part.delta;
      sums.bad += part.bad;
      sums.refunds += part.refunds;
      if (part.last) {
        sums.lastSeq = part.last.seq;
        prev = part.last;
      }
      await between();
      if (part.entries < step) break;
    }
    const open = await this.db
      .selectFrom('credit_reservations')
      .select((eb) => eb.cast<number>(eb.fn.coalesce(eb.fn.sum<number>('amount'), eb.lit(0)), 'bigint').as('total'))
      .where('user_id', '=', userId)
      .where('status', '=', 'open')
      .executeTakeFirstOrThrow();
    const after = await account();
    const balance = Number(before.balance);
    const reserved = Number(before.reserved);
    const version = Number(before.version);
    const clean =
      after !== undefined &&
      Number(after.version) === version &&
      Number(after.balance) === balance &&
      Number(after.reserved) === reserved &&
      sums.total === balance &&
      sums.delta === reserved &&
      Number(open.total) === reserved &&
      balance >= reserved &&
      sums.bad === 0 &&
      sums.refunds === 0 &&
      sums.lastSeq === version;
    return { userId, clean };
  }

  /**
   * The sums of one step of {@link accountInSteps}: the first `step` entries after `prev`
   * (from the first entry when null), in seq order, and where they end.
   */
  private async stepSums(
    userId: string,
    prev: StepEnd | null,
    step: number,
  ): Promise<{ entries: number; total: number; delta: number; bad: number; refunds: number; last: StepEnd | null }> {
    const from = prev ?? { seq: 0, balance: 0, reserved: 0 };
    // ORDER BY ... LIMIT: both dialects read the next entries through the (user_id, seq) index.
    const after = prev === null ? sql`` : sql`and seq > ${prev.seq}`;
    const { rows } = await sql<{
      n: number | string;
      total: number | string | null;
      delta: number | string | null;
      last_seq: number | string | null;
      bad: number | string | null;
      refunds: number | string | null;
    }>`
      select count(*) as n, sum(amount) as total, sum(reserved_delta) as delta, max(seq) as last_seq,
        sum(case when seq <> prev_seq + 1 or balance_after <> prev_balance + amount
          or reserved_after <> prev_reserved + reserved_delta or balance_after < reserved_after
          then 1 else 0 end) as bad,
        sum(case when kind = 'refund' then 1 else 0 end) as refunds
      from (
        select seq, kind, amount, reserved_delta, balance_after, reserved_after,
          coalesce(lag(seq) over w, ${from.seq}) as prev_seq,
          coalesce(lag(balance_after) over w, ${from.balance}) as prev_balance,
          coalesce(lag(reserved_after) over w, ${from.reserved}) as prev_reserved
        from (
          select seq, kind, amount, reserved_delta, balance_after, reserved_after from credit_ledger
          where user_id = ${userId} ${after}
          order by seq
          limit ${step}
        ) c
        window w as (order by seq)
      ) e
    `.execute(this.db);
    const r = rows[0]!;
    const entries = Number(r.n);
    if (entries === 0) return { entries, total: 0, delta: 0, bad: 0, refunds: 0, last: null };
    const lastSeq = Number(r.last_seq);
    const last = await this.db
      .selectFrom('credit_ledger')
      .select(['balance_after', 'reserved_after'])
      .where('user_id', '=', userId)
      .where('seq', '=', lastSeq)
      .executeTakeFirst();
    return {
      entries,
      total: Number(r.total),
      delta: Number(r.delta),
      bad: Number(r.bad),
      refunds: Number(r.refunds),
      last: {
        seq: lastSeq,
        balance: Number(last?.balance_after ?? Number.NaN),
        reserved: Number(last?.reserved_after ?? Number.NaN),
      },
    };
  }

  // -- the per-account check, under the account's lock (`t`: the caller's transaction) --

  /** The sum of the account's ledger amounts. */
  async entrySum(t: Queryable, userId: string): Promise<number> {
    const sums = await t
      .selectFrom('credit_ledger')
      .select((eb) => eb.cast<number>(eb.fn.coalesce(eb.fn.sum<number>('amount'), eb.lit(0)), 'bigint').as('total'))
      .where('user_id', '=', userId)
      .executeTakeFirstOrThrow();
    return Number(sums.total);
  }

  /** The sum of the account's open reservations. */
  async openReservedSum(t: Queryable, userId: string): Promise<number> {
    const open = await t
      .selectFrom('credit_reservations')
      .select((eb) => eb.cast<number>(eb.fn.coalesce(eb.fn.sum<number>('amount'), eb.lit(0)), 'bigint').as('total'))
      .where('user_id', '=', userId)
      .where('status', '=', 'open')
      .executeTakeFirstOrThrow();
    return Number(open.total);
  }

  /** At most `limit` of the account's entries from seq `fromSeq` on, in seq order. */
  async entriesFrom(t: Queryable, userId: string, fromSeq: number, limit: number): Promise<EntryRow[]> {
    return t
      .selectFrom('credit_ledger')
      .selectAll()
      .where('user_id', '=', userId)
      .where('seq', '>=', fromSeq)
      .orderBy('seq')
      .limit(limit)
      .execute();
  }

  /** The account's refunds summed per session. */
  async refundsBySession(t: Queryable, userId: string): Promise<Array<{ sessionId: string | null; total: number }>> {
    const refunds = await t
      .selectFrom('credit_ledger')
      .select((eb) => ['session_id', eb.cast<number>(eb.fn.sum<number>('amount'), 'bigint').as('total')])
      .where('user_id', '=', userId)
      .where('kind', '=', 'refund')
      .groupBy('session_id')
      .execute();
    return refunds.map((r) => ({ sessionId: r.session_id, total: Number(r.total) }));
  }

  /** What the session's reservations of the account charged, summed. */
  async chargedOfSession(t: Queryable, userId: string, sessionId: string): Promise<number> {
    const charged = await t
      .selectFrom('credit_reservations')
      .select((eb) => eb.cast<number>(eb.fn.coalesce(eb.fn.sum<number>('charged'), eb.lit(0)), 'bigint').as('total'))
      .where('user_id', '=', userId)
      .where('session_id', '=', sessionId)
      .executeTakeFirstOrThrow();
    return Number(charged.total);
  }

  // -- the pools ------------------------------------------------------------------------

  /** Every tenant with a pool, in id order (a plain read). */
  async poolTenantIds(): Promise<string[]> {
    const pools = await this.db.selectFrom('credit_pools').select('tenant_id').orderBy('tenant_id').execute();
    return pools.map((p) => p.tenant_id);
  }

  /** The sum of the pool's entries. */
  async poolEntrySum(t: Queryable, tenantId: string): Promise<number> {
    const sums = await t
      .selectFrom('credit_pool_ledger')
      .select((eb) => eb.cast<number>(eb.fn.coalesce(eb.fn.sum<number>('amount'), eb.lit(0)), 'bigint').as('total'))
      .where('tenant_id', '=', tenantId)
      .executeTakeFirstOrThrow();
    return Number(sums.total);
  }

  /** At most `limit` of the pool's entries from seq `fromSeq` on, in seq order. */
  async poolEntriesFrom(t: Queryable, tenantId: string, fromSeq: number, limit: number): Promise<PoolEntryRow[]> {
    return t
      .selectFrom('credit_pool_ledger')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('seq', '>=', fromSeq)
      .orderBy('seq')
      .limit(limit)
      .execute();
  }

  /**
   * The pool's `transfer` entries whose member `grant` entry is missing or does not match
   * (amount, kind, the pointers both ways, user, tenant): at most 1000, in seq order.
   */
  async brokenTransfers(
    t: Queryable,
    tenantId: string,
  ): Promise<Array<{ id: string; amount: number; memberEntryId: string | null; memberAmount: number | null }>> {
    return t
      .selectFrom('credit_pool_ledger as p')
      .leftJoin('credit_ledger as l', 'l.id', 'p.transfer_entry_id')
      .select(['p.id as id', 'p.amount as amount', 'l.id as memberEntryId', 'l.amount as memberAmount'])
      .where('p.tenant_id', '=', tenantId)
      .where('p.kind', '=', 'transfer')
      .where(
        sql<boolean>`(l.id is null or l.amount + p.amount <> 0 or l.kind <> 'grant' or l.pool_entry_id is null or l.pool_entry_id <> p.id
        or l.user_id <> p.user_id or l.tenant_id is null or l.tenant_id <> p.tenant_id)`,
      )
      .orderBy('p.seq')
      .limit(1000)
      .execute();
  }

  /**
   * Member entries that name a pool entry which does not exist or does not name them back:
   * at most 1000, in id order (a plain read).
   */
  async danglingPoolReferences(): Promise<
    Array<{ id: string; userId: string; amount: number; poolEntryId: string | null }>
  > {
    return this.db
      .selectFrom('credit_ledger as l')
      .leftJoin('credit_pool_ledger as p', 'p.id', 'l.pool_entry_id')
      .select(['l.id as id', 'l.user_id as userId', 'l.amount as amount', 'p.id as poolEntryId'])
      .where('l.pool_entry_id', 'is not', null)
      .where(sql<boolean>`(p.id is null or p.transfer_entry_id is null or p.transfer_entry_id <> l.id)`)
      .orderBy('l.id')
      .limit(1000)
      .execute();
  }
}
