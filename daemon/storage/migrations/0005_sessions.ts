import type { Kysely } from 'kysely';

/** Sessions (their row is also the concurrency slot) and their ordered events. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('sessions')
    .addColumn('id', 'varchar(40)', (c) => c.primaryKey())
    .addColumn('user_id', 'varchar(40)', (c) => c.notNull().references('users.id'))
    .addColumn('tenant_id', 'varchar(40)')
    .addColumn('status', 'varchar(20)', (c) => c.notNull())
    .addColumn('current_phase', 'varchar(64)')
    .addColumn('vision', 'text', (c) => c.notNull())
    .addColumn('options', 'text', (c) => c.notNull())
    .addColumn('webhook_url', 'text')
    .addColumn('reservation_id', 'varchar(40)', (c) => c.notNull())
    .addColumn('reserved', 'bigint', (c) => c.notNull())
    .addColumn('estimated_cost', 'bigint', (c) => c.notNull())
    .addColumn('cost_so_far', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('final_cost', 'bigint')
    .addColumn('input_tokens', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('output_tokens', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('web_searches', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('owner', 'varchar(64)', (c) => c.notNull())
    .addColumn('last_seq', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('cancel_requested_at', 'bigint')
    .addColumn('end_reason', 'varchar(64)')
    .addColumn('summary', 'text')
    .addColumn('request_id', 'varchar(140)')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('ended_at', 'bigint')
    .execute();
  await db.schema.createIndex('sessions_user_status_idx').on('sessions').columns(['user_id', 'status']).execute();
  await db.schema.createIndex('sessions_user_id_idx').on('sessions').columns(['user_id', 'id']).execute();
  await db.schema.createIndex('sessions_tenant_id_idx').on('sessions').columns(['tenant_id', 'id']).execute();
  await db.schema.createIndex('sessions_owner_status_idx').on('sessions').columns(['owner', 'status']).execute();
  await db.schema
    .createTable('session_events')
    .addColumn('session_id', 'varchar(40)', (c) => c.notNull().references('sessions.id').onDelete('cascade'))
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .addColumn('ts', 'bigint', (c) => c.notNull())
    .addColumn('type', 'varchar(40)', (c) => c.notNull())
    .addColumn('data', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('session_events_pk', ['session_id', 'seq'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('session_events').execute();
  await db.schema.dropTable('sessions').execute();
}
