import { sql, type Kysely } from 'kysely';

/**
 * Registered webhook endpoints (docs/webhooks.md): an owner's URL, the event
 * types it wants and its own signing secret (sealed with the server secret, like
 * TOTP secrets; the one before a rotation is kept until `previous_secret_expires_at`
 * so deliveries carry both signatures meanwhile). `failing_since` is when its
 * attempts started failing; past `webhooks.disable_endpoint_after_hours` the
 * gateway disables it and says why.
 *
 * Deliveries name their endpoint (null: a one-off `webhook_url` of an execute),
 * and every attempt is kept in `webhook_attempts` for the delivery log.
 * `api_keys.expiry_notified_at`: `api_key.expiring` was sent for the key.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('webhook_endpoints')
    .addColumn('id', 'varchar(40)', (c) => c.primaryKey())
    .addColumn('user_id', 'varchar(40)', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('tenant_id', 'varchar(40)')
    .addColumn('url', 'varchar(2048)', (c) => c.notNull())
    .addColumn('description', 'varchar(500)')
    .addColumn('event_types', 'text', (c) => c.notNull())
    .addColumn('enabled', 'integer', (c) => c.notNull())
    .addColumn('disabled_reason', 'varchar(500)')
    .addColumn('disabled_at', 'bigint')
    .addColumn('failing_since', 'bigint')
    .addColumn('low_balance_threshold', 'bigint')
    .addColumn('secret_enc', 'text', (c) => c.notNull())
    .addColumn('previous_secret_enc', 'text')
    .addColumn('previous_secret_expires_at', 'bigint')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addCheckConstraint('webhook_endpoints_enabled', sql`enabled in (0, 1)`)
    .execute();
  await db.schema
    .createIndex('webhook_endpoints_user_idx')
    .on('webhook_endpoints')
    .columns(['user_id', 'id'])
    .execute();
  await db.schema
    .createIndex('webhook_endpoints_tenant_idx')
    .on('webhook_endpoints')
    .columns(['tenant_id', 'id'])
    .execute();

  await db.schema.alterTable('webhook_deliveries').addColumn('endpoint_id', 'varchar(40)').execute();
  // Each resend allows one attempt beyond webhooks' attempt limit.
  await db.schema
    .alterTable('webhook_deliveries')
    .addColumn('resends', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema
    .createIndex('webhook_deliveries_endpoint_idx')
    .on('webhook_deliveries')
    .columns(['endpoint_id', 'id'])
    .execute();

  await db.schema
    .createTable('webhook_attempts')
    .addColumn('delivery_id', 'varchar(40)', (c) => c.notNull())
    .addColumn('attempt', 'integer', (c) => c.notNull())
    .addColumn('endpoint_id', 'varchar(40)')
    .addColumn('started_at', 'bigint', (c) => c.notNull())
    .addColumn('duration_ms', 'integer', (c) => c.notNull())
    .addColumn('status_code', 'integer')
    .addColumn('outcome', 'varchar(20)', (c) => c.notNull())
    .addColumn('error', 'varchar(255)')
    .addColumn('response_excerpt', 'varchar(2048)')
    .addPrimaryKeyConstraint('webhook_attempts_pk', ['delivery_id', 'attempt'])
    .execute();

  await db.schema.alterTable('api_keys').addColumn('expiry_notified_at', 'bigint').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('api_keys').dropColumn('expiry_notified_at').execute();
  await db.schema.dropTable('webhook_attempts').execute();
  await db.schema.dropIndex('webhook_deliveries_endpoint_idx').execute();
  await db.schema.alterTable('webhook_deliveries').dropColumn('resends').execute();
  await db.schema.alterTable('webhook_deliveries').dropColumn('endpoint_id').execute();
  await db.schema.dropTable('webhook_endpoints').execute();
}
