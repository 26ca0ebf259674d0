import type { Selectable } from 'kysely';
import type { Database, Queryable } from '../database.js';
import type { CreditTables } from '../tables/credits.js';

export type PoolRow = Selectable<CreditTables['credit_pools']>;
export type PoolEntryRow = Selectable<CreditTables['credit_pool_ledger']>;

/**
 * Tenant credit pools and their ledgers (daemon/credits/pools.ts holds the
 * rules). Methods that take `t` run in the caller's transaction; a pool is
 * locked like an account (FOR NO KEY UPDATE on Postgres).
 */
export class PoolRepository {
  constructor(private readonly database: Database) {}

  /** Reads the tenant's pool and locks it for the rest of `t`. */
  async lockPool(t: Queryable, tenantId: string): Promise<PoolRow | undefined> {
    const q = t.selectFrom('credit_pools').selectAll().where('tenant_id', '=', tenantId);
    return (this.database.dialect === 'postgres' ? q.forNoKeyUpdate() : q).executeTakeFirst();
  }

  /** Whether the tenant a pool is created for exists. */
  async poolTenant(t: Queryable, tenantId: string): Promise<{ id: string } | undefined> {
    return t.selectFrom('tenants').select('id').where('id', '=', tenantId).executeTakeFirst();
  }

  /** Creates an empty pool; race-safe (ON CONFLICT DO NOTHING: a concurrent insert wins quietly). */
  async createPool(t: Queryable, tenantId: string, now: number): Promise<void> {
    await t
      .insertInto('credit_pools')
      .values({ tenant_id: tenantId, balance: 0, updated_at: now, version: 0 })
      .onConflict((oc) => oc.column('tenant_id').doNothing())
      .execute();
  }

  async insertEntry(t: Queryable, row: PoolEntryRow): Promise<void> {
    await t.insertInto('credit_pool_ledger').values(row).execute();
  }

  /** Writes the locked pool back, only if its version moved forward; returns the rows written (1, or 0). */
  async savePool(t: Queryable, pool: PoolRow, now: number): Promise<number> {
    const saved = await t
      .updateTable('credit_pools')
      .set({ balance: pool.balance, version: pool.version, updated_at: now })
      .where('tenant_id', '=', pool.tenant_id)
      .where('version', '<', pool.version)
      .executeTakeFirst();
    return Number(saved.numUpdatedRows);
  }

  /** The pool's entry recorded with an idempotency key, if any (unique per tenant). */
  async keyedEntry(t: Queryable, tenantId: string, key: string): Promise<PoolEntryRow | undefined> {
    return t
      .selectFrom('credit_pool_ledger')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('idempotency_key', '=', key)
      .executeTakeFirst();
  }

  async entry(t: Queryable, id: string): Promise<PoolEntryRow | undefined> {
    return t.selectFrom('credit_pool_ledger').selectAll().where('id', '=', id).executeTakeFirst();
  }

  /** A tenant with its pool, if it has one (balance and updated_at null when not); undefined for an unknown tenant. */
  async tenantPool(
    tenantId: string,
    trx?: Queryable,
  ): Promise<{ id: string; balance: number | null; updated_at: number | null } | undefined> {
    return (trx ?? this.database.db)
      .selectFrom('tenants')
      .leftJoin('credit_pools', 'credit_pools.tenant_id', 'tenants.id')
      .select(['tenants.id as id', 'credit_pools.balance as balance', 'credit_pools.updated_at as updated_at'])
      .where('tenants.id', '=', tenantId)
      .executeTakeFirst();
  }

  /** Pools by tenant id: `limit` rows after `after`, or only `tenantId`'s. */
  async list(options: { limit: number; after?: string | null; tenantId?: string }): Promise<PoolRow[]> {
    let q = this.database.db.selectFrom('credit_pools').selectAll().orderBy('tenant_id').limit(options.limit);
    if (options.after) q = q.where('tenant_id', '>', options.after);
    if (options.tenantId !== undefined) q = q.where('tenant_id', '=', options.tenantId);
    return q.execute();
  }

  /** A page of a pool's entries, newest first: `limit` rows with seq below `before` (when given). */
  async entries(tenantId: string, options: { limit: number; before: number | null }): Promise<PoolEntryRow[]> {
    let q = this.database.db
      .selectFrom('credit_pool_ledger')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .orderBy('seq', 'desc')
      .limit(options.limit);
    if (options.before !== null) q = q.where('seq', '<', options.before);
    return q.execute();
  }
}
