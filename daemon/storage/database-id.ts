import { randomUUID } from 'node:crypto';
import type { Database } from './database.js';

/** The gateway_meta key of the database's identity. */
export const DATABASE_ID_KEY = 'database_id';

/**
 * This database's identity: a random id kept in gateway_meta, made on first
 * use. Every daemon of a fleet shares it (it lives in the database, not in the
 * data directory), so `keen-admin init` can tell whether the daemon that answers
 * serves the database it opened. Needs the migrated schema.
 */
export async function ensureDatabaseId(database: Database): Promise<string> {
  await database.db
    .insertInto('gateway_meta')
    .values({ key: DATABASE_ID_KEY, value: randomUUID() })
    .onConflict((oc) => oc.column('key').doNothing())
    .execute();
  const row = await database.db
    .selectFrom('gateway_meta')
    .select('value')
    .where('key', '=', DATABASE_ID_KEY)
    .executeTakeFirstOrThrow();
  return row.value;
}

/** The database's identity (gateway_meta), without creating anything: null before a daemon first started on it. */
export async function readDatabaseId(database: Database): Promise<string | null> {
  try {
    const row = await database.db
      .selectFrom('gateway_meta')
      .select('value')
      .where('key', '=', DATABASE_ID_KEY)
      .executeTakeFirst();
    return row?.value ?? null;
  } catch {
    // No gateway_meta table: never migrated.
    return null;
  }
}
