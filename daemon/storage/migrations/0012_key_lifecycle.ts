import type { Kysely } from 'kysely';

/**
 * API key lifecycle (docs/API.md, "API keys"): a key is rolled to a new secret
 * under the same id, and the secret it had keeps authenticating until
 * `previous_expires_at` (the grace period). Only one previous secret is kept:
 * rolling again drops the older one at once. `rolled_at`: the last roll.
 * Authentication finds a key by `key_hash` or `previous_key_hash`, both indexed.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('api_keys').addColumn('previous_key_hash', 'varchar(64)').execute();
  await db.schema.alterTable('api_keys').addColumn('previous_key_prefix', 'varchar(24)').execute();
  await db.schema.alterTable('api_keys').addColumn('previous_expires_at', 'bigint').execute();
  await db.schema.alterTable('api_keys').addColumn('rolled_at', 'bigint').execute();
  // NULLs are distinct on both dialects: only keys rolled with a grace period hold one.
  await db.schema
    .createIndex('api_keys_previous_hash_uq')
    .on('api_keys')
    .column('previous_key_hash')
    .unique()
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('api_keys_previous_hash_uq').execute();
  for (const c of ['rolled_at', 'previous_expires_at', 'previous_key_prefix', 'previous_key_hash']) {
    await db.schema.alterTable('api_keys').dropColumn(c).execute();
  }
}
