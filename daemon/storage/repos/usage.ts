import { sql, type RawBuilder, type SelectQueryBuilder } from 'kysely';
import { reachFilter, type Reach } from '../../policies/index.js';
import type { Database } from '../database.js';
import type { DB } from '../schema.js';

/** What a usage report groups by, in SQL: a time bucket of `bucketMs`, or a key, user or tenant column. */
export type UsageGrouping = { by: 'day'; bucketMs: number } | { by: 'key' | 'user' | 'tenant' };

/** The rows a report covers, on either table: a range, the caller's reach and the filters. */
export interface UsageFilter {
  reach: Reach;
  /** Epoch ms, inclusive. */
  since: number;
  /** Epoch ms, exclusive. */
  until: number;
  userId?: string | null;
  apiKeyId?: string | null;
  tenantId?: string | null;
}

/** Sums of the ledger per group (bigint sums as the driver returns them). */
export interface LedgerSumsRow {
  g: unknown;
  charge: unknown;
  refund: unknown;
  adjustment: unknown;
  grant: unknown;
}

/** Sums of the sessions per group (bigint sums as the driver returns them). */
export interface SessionSumsRow {
  g: unknown;
  n: unknown;
  input_tokens: unknown;
  output_tokens: unknown;
  web_searches: unknown;
}

type Table = 'credit_ledger' | 'sessions';

/**
 * The usage reports' reads (daemon/credits/usage.ts folds and labels them):
 * everything aggregated in SQL (GROUP BY), the same on SQLite and Postgres.
 */
export class UsageRepository {
  constructor(private readonly database: Database) {}

  /** Whether a tenant exists (an admin's `tenant_id` filter). */
  async tenantExists(tenantId: string): Promise<boolean> {
    const row = await this.database.db.selectFrom('tenants').select('id').where('id', '=', tenantId).executeTakeFirst();
    return row !== undefined;
  }

  /** charge, refund, adjustment and grant sums of the ledger, per group. */
  async ledgerSums(filter: UsageFilter, grouping: UsageGrouping): Promise<LedgerSumsRow[]> {
    const rows = await this.restrict(this.database.db.selectFrom('credit_ledger'), 'credit_ledger', filter)
      .select([
        groupSql(grouping).as('g'),
        sql<string>`coalesce(sum(case when kind = 'charge' then amount else 0 end), 0)`.as('charge'),
        sql<string>`coalesce(sum(case when kind = 'refund' then amount else 0 end), 0)`.as('refund'),
        sql<string>`coalesce(sum(case when kind = 'adjustment' then amount else 0 end), 0)`.as('adjustment'),
        sql<string>`coalesce(sum(case when kind = 'grant' then amount else 0 end), 0)`.as('grant'),
      ])
      .where('kind', 'in', ['charge', 'refund', 'adjustment', 'grant'])
      .groupBy(groupSql(grouping))
      .execute();
    return rows as LedgerSumsRow[];
  }

  /** Session counts and token and search sums, per group. */
  async sessionSums(filter: UsageFilter, grouping: UsageGrouping): Promise<SessionSumsRow[]> {
    const rows = await this.restrict(this.database.db.selectFrom('sessions'), 'sessions', filter)
      .select([
        groupSql(grouping).as('g'),
        sql<string>`count(*)`.as('n'),
        sql<string>`coalesce(sum(input_tokens), 0)`.as('input_tokens'),
        sql<string>`coalesce(sum(output_tokens), 0)`.as('output_tokens'),
        sql<string>`coalesce(sum(web_searches), 0)`.as('web_searches'),
      ])
      .groupBy(groupSql(grouping))
      .execute();
    return rows as SessionSumsRow[];
  }

  /** Names of the given ids: key names, user emails or tenant names. */
  async labels(of: 'key' | 'user' | 'tenant', ids: string[]): Promise<Array<{ id: string; label: string }>> {
    const db = this.database.db;
    return of === 'key'
      ? db.selectFrom('api_keys').select(['id', 'name as label']).where('id', 'in', ids).execute()
      : of === 'user'
        ? db.selectFrom('users').select(['id', 'email as label']).where('id', 'in', ids).execute()
        : db.selectFrom('tenants').select(['id', 'name as label']).where('id', 'in', ids).execute();
  }

  /** The range, the caller's reach and the filters, on either table (both have created_at, user_id, tenant_id,
   * api_key_id). */
  private restrict<T extends Table, O>(
    qb: SelectQueryBuilder<DB, T, O>,
    _table: T,
    q: UsageFilter,
  ): SelectQueryBuilder<DB, T, O> {
    // One generic builder over two tables: the shared column names are checked by the Table types above.
    let b = qb as unknown as SelectQueryBuilder<DB, 'credit_ledger', O>;
    b = b.where('created_at', '>=', q.since).where('created_at', '<', q.until);
    const f = reachFilter(q.reach);
    if (f) b = b.where(f.column, '=', f.value);
    if (q.userId) b = b.where('user_id', '=', q.userId);
    if (q.tenantId) b = b.where('tenant_id', '=', q.tenantId);
    if (q.apiKeyId) b = b.where('api_key_id', '=', q.apiKeyId);
    return b as unknown as SelectQueryBuilder<DB, T, O>;
  }
}

function groupSql(grouping: UsageGrouping): RawBuilder<unknown> {
  switch (grouping.by) {
    // A literal divisor, not a parameter: Postgres must see the same expression in SELECT and GROUP BY.
    case 'day':
      if (!Number.isSafeInteger(grouping.bucketMs) || grouping.bucketMs <= 0) throw new RangeError('usage: bad bucket');
      return sql.raw(`created_at / ${grouping.bucketMs}`);
    case 'key':
      return sql.ref('api_key_id');
    case 'user':
      return sql.ref('user_id');
    case 'tenant':
      return sql.ref('tenant_id');
  }
}
