import { sql, type Kysely } from 'kysely';

/**
 * Tenant credit pools (docs/credits.md, "Tenant credit pools"): the platform
 * grants credits into a tenant's pool, the tenant's admins hand them out to
 * their members. A pool is an account of its own with an append-only ledger,
 * kept like a user's (balance = sum of entries, a balance_after chain, a
 * version = last seq, never negative). A transfer writes the pool's `transfer`
 * entry and the member's `grant` entry in one transaction; each names the other
 * (`transfer_entry_id`, `credit_ledger.pool_entry_id`) so `verify()` pairs them.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('credit_pools')
    .addColumn('tenant_id', 'varchar(40)', (c) => c.primaryKey().references('tenants.id').onDelete('restrict'))
    .addColumn('balance', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('version', 'bigint', (c) => c.notNull())
    .addCheckConstraint('credit_pools_balance_nonneg', sql`balance >= 0`)
    .execute();

  await db.schema
    .createTable('credit_pool_ledger')
    .addColumn('id', 'varchar(40)', (c) => c.primaryKey())
    .addColumn('tenant_id', 'varchar(40)', (c) => c.notNull().references('credit_pools.tenant_id'))
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .addColumn('kind', 'varchar(20)', (c) => c.notNull())
    .addColumn('amount', 'bigint', (c) => c.notNull())
    .addColumn('balance_after', 'bigint', (c) => c.notNull())
    .addColumn('reason', 'varchar(500)')
    .addColumn('actor_type', 'varchar(20)', (c) => c.notNull())
    .addColumn('actor_id', 'varchar(40)')
    // The member a `transfer` went to, and the member's `grant` entry it wrote.
    .addColumn('user_id', 'varchar(40)')
    .addColumn('transfer_entry_id', 'varchar(40)')
    .addColumn('idempotency_key', 'varchar(255)')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addCheckConstraint(
      'credit_pool_ledger_kind',
      sql`(kind = 'grant' and amount > 0) or (kind = 'transfer' and amount < 0 and user_id is not null and transfer_entry_id is not null)`,
    )
    .addCheckConstraint('credit_pool_ledger_nonneg', sql`balance_after >= 0`)
    .execute();
  await db.schema
    .createIndex('credit_pool_ledger_seq_uq')
    .on('credit_pool_ledger')
    .columns(['tenant_id', 'seq'])
    .unique()
    .execute();
  // NULLs are distinct on both dialects, so only keyed pool grants compete here.
  await db.schema
    .createIndex('credit_pool_ledger_idempotency_uq')
    .on('credit_pool_ledger')
    .columns(['tenant_id', 'idempotency_key'])
    .unique()
    .execute();

  await db.schema.alterTable('credit_ledger').addColumn('pool_entry_id', 'varchar(40)').execute();
  await db.schema.createIndex('credit_ledger_pool_entry_idx').on('credit_ledger').column('pool_entry_id').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('credit_ledger_pool_entry_idx').execute();
  await db.schema.alterTable('credit_ledger').dropColumn('pool_entry_id').execute();
  await db.schema.dropTable('credit_pool_ledger').execute();
  await db.schema.dropTable('credit_pools').execute();
}
