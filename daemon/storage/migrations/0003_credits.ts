import { sql, type Kysely } from 'kysely';

/** Credit accounts, the append-only ledger, reservations (leases) and idempotency keys. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('credit_accounts')
    .addColumn('user_id', 'varchar(40)', (c) => c.primaryKey().references('users.id').onDelete('restrict'))
    .addColumn('tenant_id', 'varchar(40)')
    .addColumn('balance', 'bigint', (c) => c.notNull())
    .addColumn('reserved', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('version', 'bigint', (c) => c.notNull())
    // available = balance - reserved never below zero at any commit, whatever the code does.
    .addCheckConstraint('credit_accounts_reserved_nonneg', sql`reserved >= 0`)
    .addCheckConstraint('credit_accounts_available_nonneg', sql`balance >= reserved`)
    .execute();
  await db.schema
    .createIndex('credit_accounts_tenant_idx')
    .on('credit_accounts')
    .columns(['tenant_id', 'user_id'])
    .execute();

  await db.schema
    .createTable('credit_ledger')
    .addColumn('id', 'varchar(40)', (c) => c.primaryKey())
    .addColumn('user_id', 'varchar(40)', (c) => c.notNull().references('credit_accounts.user_id'))
    .addColumn('tenant_id', 'varchar(40)')
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .addColumn('kind', 'varchar(20)', (c) => c.notNull())
    .addColumn('amount', 'bigint', (c) => c.notNull())
    .addColumn('reserved_delta', 'bigint', (c) => c.notNull())
    .addColumn('balance_after', 'bigint', (c) => c.notNull())
    .addColumn('reserved_after', 'bigint', (c) => c.notNull())
    .addColumn('reason', 'varchar(500)')
    .addColumn('actor_type', 'varchar(20)', (c) => c.notNull())
    .addColumn('actor_id', 'varchar(40)')
    .addColumn('reservation_id', 'varchar(40)')
    .addColumn('session_id', 'varchar(40)')
    .addColumn('idempotency_key', 'varchar(255)')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addCheckConstraint(
      'credit_ledger_kind',
      sql`kind in ('grant', 'reserve', 'charge', 'release', 'refund', 'adjustment')`,
    )
    .execute();
  await db.schema.createIndex('credit_ledger_user_idx').on('credit_ledger').columns(['user_id', 'id']).execute();
  await db.schema
    .createIndex('credit_ledger_user_seq_uq')
    .on('credit_ledger')
    .columns(['user_id', 'seq'])
    .unique()
    .execute();
  // NULLs are distinct on both dialects, so only keyed grants compete here.
  await db.schema
    .createIndex('credit_ledger_idempotency_uq')
    .on('credit_ledger')
    .columns(['user_id', 'idempotency_key'])
    .unique()
    .execute();
  await db.schema.createIndex('credit_ledger_reservation_idx').on('credit_ledger').column('reservation_id').execute();

  await db.schema
    .createTable('credit_reservations')
    .addColumn('id', 'varchar(40)', (c) => c.primaryKey())
    .addColumn('user_id', 'varchar(40)', (c) => c.notNull().references('credit_accounts.user_id'))
    .addColumn('tenant_id', 'varchar(40)')
    .addColumn('amount', 'bigint', (c) => c.notNull())
    .addColumn('status', 'varchar(20)', (c) => c.notNull())
    .addColumn('charged', 'bigint', (c) => c.notNull())
    .addColumn('session_id', 'varchar(40)')
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('settled_at', 'bigint')
    .addColumn('owner', 'varchar(100)', (c) => c.notNull())
    .addCheckConstraint('credit_reservations_status', sql`status in ('open', 'settled', 'released', 'expired')`)
    .addCheckConstraint('credit_reservations_amounts', sql`amount > 0 and charged >= 0 and charged <= amount`)
    .execute();
  await db.schema
    .createIndex('credit_reservations_user_idx')
    .on('credit_reservations')
    .columns(['user_id', 'status'])
    .execute();
  await db.schema
    .createIndex('credit_reservations_expiry_idx')
    .on('credit_reservations')
    .columns(['status', 'expires_at'])
    .execute();
  await db.schema
    .createIndex('credit_reservations_session_idx')
    .on('credit_reservations')
    .column('session_id')
    .execute();

  await db.schema
    .createTable('idempotency_keys')
    .addColumn('user_id', 'varchar(40)', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('key', 'varchar(255)', (c) => c.notNull())
    .addColumn('request_hash', 'varchar(64)', (c) => c.notNull())
    .addColumn('status', 'varchar(20)', (c) => c.notNull())
    .addColumn('response_status', 'integer')
    .addColumn('response_body', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('idempotency_keys_pk', ['user_id', 'key'])
    .execute();
  await db.schema.createIndex('idempotency_keys_expiry_idx').on('idempotency_keys').column('expires_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const t of ['idempotency_keys', 'credit_reservations', 'credit_ledger', 'credit_accounts']) {
    await db.schema.dropTable(t).execute();
  }
}
