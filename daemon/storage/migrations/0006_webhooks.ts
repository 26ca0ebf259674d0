import { sql, type Kysely } from 'kysely';

/** The webhook outbox: one row per message, written in the transaction that produced the event. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('webhook_deliveries')
    .addColumn('id', 'varchar(40)', (c) => c.primaryKey())
    .addColumn('user_id', 'varchar(40)', (c) => c.notNull())
    .addColumn('tenant_id', 'varchar(40)')
    .addColumn('session_id', 'varchar(40)')
    .addColumn('url', 'text', (c) => c.notNull())
    .addColumn('event_type', 'varchar(64)', (c) => c.notNull())
    .addColumn('payload', 'text', (c) => c.notNull())
    .addColumn('status', 'varchar(20)', (c) => c.notNull())
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('next_attempt_at', 'bigint', (c) => c.notNull())
    .addColumn('last_status_code', 'integer')
    .addColumn('last_error', 'varchar(255)')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('delivered_at', 'bigint')
    .addCheckConstraint('webhook_deliveries_status', sql`status in ('pending', 'delivering', 'delivered', 'failed')`)
    .addCheckConstraint('webhook_deliveries_attempts', sql`attempts >= 0`)
    .execute();
  // The worker's scan: due pending rows and lapsed claims.
  await db.schema
    .createIndex('webhook_deliveries_due_idx')
    .on('webhook_deliveries')
    .columns(['status', 'next_attempt_at'])
    .execute();
  await db.schema.createIndex('webhook_deliveries_session_idx').on('webhook_deliveries').column('session_id').execute();
  await db.schema
    .createIndex('webhook_deliveries_user_idx')
    .on('webhook_deliveries')
    .columns(['user_id', 'id'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('webhook_deliveries').execute();
}
