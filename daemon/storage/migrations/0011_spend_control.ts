import { sql, type Kysely } from 'kysely';

/**
 * Spend control (docs/credits.md, "Budgets" and "Usage"):
 *
 * - `api_key_id` on sessions, reservations and ledger entries: which key spent,
 *   for per-key budgets and usage by key (null when the caller signed in).
 * - `budgets`: at most one per API key, user or tenant: an amount per period.
 * - `budget_windows`: what each budget admitted in one period (open holds plus
 *   what their settlement charged), locked at reservation so parallel executes
 *   never exceed it. A reservation names the windows it counted against
 *   (`credit_reservations.budget_windows`, JSON) so settlement, release and the
 *   reaper give back what was not charged to the same windows.
 * - ledger indexes on time, for usage over a range.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('sessions').addColumn('api_key_id', 'varchar(40)').execute();
  await db.schema.alterTable('credit_reservations').addColumn('api_key_id', 'varchar(40)').execute();
  await db.schema.alterTable('credit_reservations').addColumn('budget_windows', 'text').execute();
  await db.schema.alterTable('credit_ledger').addColumn('api_key_id', 'varchar(40)').execute();
  await db.schema.createIndex('credit_ledger_created_idx').on('credit_ledger').columns(['created_at']).execute();
  await db.schema
    .createIndex('credit_ledger_tenant_created_idx')
    .on('credit_ledger')
    .columns(['tenant_id', 'created_at'])
    .execute();
  await db.schema.createIndex('sessions_created_idx').on('sessions').columns(['created_at']).execute();
  // A budget window is seeded from the reservations its subject made in the period.
  for (const column of ['api_key_id', 'user_id', 'tenant_id']) {
    await db.schema
      .createIndex(`credit_reservations_${column}_created_idx`)
      .on('credit_reservations')
      .columns([column, 'created_at'])
      .execute();
  }

  await db.schema
    .createTable('budgets')
    .addColumn('subject_type', 'varchar(10)', (c) => c.notNull())
    .addColumn('subject_id', 'varchar(40)', (c) => c.notNull())
    .addColumn('tenant_id', 'varchar(40)')
    .addColumn('amount', 'bigint', (c) => c.notNull())
    .addColumn('period', 'varchar(10)', (c) => c.notNull())
    // Who set it: only that role or a higher one may change or remove it (an owner cannot lift an admin's cap).
    .addColumn('set_by', 'varchar(20)', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('budgets_pk', ['subject_type', 'subject_id'])
    .addCheckConstraint('budgets_subject_type', sql`subject_type in ('api_key', 'user', 'tenant')`)
    .addCheckConstraint('budgets_period', sql`period in ('day', 'week', 'month', 'total')`)
    .addCheckConstraint('budgets_amount', sql`amount > 0`)
    .addCheckConstraint('budgets_set_by', sql`set_by in ('owner', 'tenant_admin', 'platform_admin')`)
    .execute();

  await db.schema
    .createTable('budget_windows')
    .addColumn('subject_type', 'varchar(10)', (c) => c.notNull())
    .addColumn('subject_id', 'varchar(40)', (c) => c.notNull())
    .addColumn('window_start', 'bigint', (c) => c.notNull())
    .addColumn('used', 'bigint', (c) => c.notNull())
    .addColumn('notified_pct', 'integer', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('budget_windows_pk', ['subject_type', 'subject_id', 'window_start'])
    .addCheckConstraint('budget_windows_used', sql`used >= 0`)
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('budget_windows').execute();
  await db.schema.dropTable('budgets').execute();
  for (const column of ['api_key_id', 'user_id', 'tenant_id']) {
    await db.schema.dropIndex(`credit_reservations_${column}_created_idx`).execute();
  }
  await db.schema.dropIndex('sessions_created_idx').execute();
  await db.schema.dropIndex('credit_ledger_tenant_created_idx').execute();
  await db.schema.dropIndex('credit_ledger_created_idx').execute();
  await db.schema.alterTable('credit_ledger').dropColumn('api_key_id').execute();
  await db.schema.alterTable('credit_reservations').dropColumn('budget_windows').execute();
  await db.schema.alterTable('credit_reservations').dropColumn('api_key_id').execute();
  await db.schema.alterTable('sessions').dropColumn('api_key_id').execute();
}
