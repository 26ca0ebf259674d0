import type { Kysely } from 'kysely';

const GENESIS_HASH = '0'.repeat(64);

/** The hash-chained audit log, its chain head and the record of retention cuts. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('audit_log')
    .addColumn('id', 'varchar(40)', (c) => c.primaryKey())
    .addColumn('seq', 'bigint', (c) => c.notNull().unique())
    .addColumn('ts', 'bigint', (c) => c.notNull())
    .addColumn('actor_type', 'varchar(20)', (c) => c.notNull())
    .addColumn('actor_id', 'text')
    .addColumn('tenant_id', 'varchar(40)')
    .addColumn('action', 'varchar(100)', (c) => c.notNull())
    .addColumn('target_type', 'varchar(50)')
    .addColumn('target_id', 'text')
    .addColumn('outcome', 'varchar(10)', (c) => c.notNull())
    .addColumn('ip', 'varchar(100)')
    .addColumn('user_agent', 'text')
    .addColumn('request_id', 'varchar(100)')
    .addColumn('details', 'text', (c) => c.notNull())
    .addColumn('prev_hash', 'varchar(64)', (c) => c.notNull())
    .addColumn('hash', 'varchar(64)', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('audit_log_tenant_seq_idx').on('audit_log').columns(['tenant_id', 'seq']).execute();
  await db.schema.createIndex('audit_log_action_seq_idx').on('audit_log').columns(['action', 'seq']).execute();
  await db.schema.createIndex('audit_log_actor_seq_idx').on('audit_log').columns(['actor_id', 'seq']).execute();
  await db.schema.createIndex('audit_log_target_seq_idx').on('audit_log').columns(['target_id', 'seq']).execute();
  await db.schema.createIndex('audit_log_ts_idx').on('audit_log').column('ts').execute();

  await db.schema
    .createTable('audit_head')
    .addColumn('id', 'varchar(20)', (c) => c.primaryKey())
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .addColumn('hash', 'varchar(64)', (c) => c.notNull())
    .execute();
  // The one chain-head row every append locks; created here so appends never race to create it.
  await (db as Kysely<{ audit_head: { id: string; seq: number; hash: string } }>)
    .insertInto('audit_head')
    .values({ id: 'chain', seq: 0, hash: GENESIS_HASH })
    .execute();

  await db.schema
    .createTable('audit_archive')
    .addColumn('first_seq', 'bigint', (c) => c.primaryKey())
    .addColumn('last_seq', 'bigint', (c) => c.notNull().unique())
    .addColumn('last_hash', 'varchar(64)', (c) => c.notNull())
    .addColumn('file', 'text', (c) => c.notNull())
    .addColumn('entries', 'integer', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const t of ['audit_archive', 'audit_head', 'audit_log']) {
    await db.schema.dropTable(t).execute();
  }
}
