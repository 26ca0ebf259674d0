import { createLogger } from '../../daemon/logger.js';
import { Database } from '../../daemon/storage/database.js';
import { migrateToLatest } from '../../daemon/storage/migrator.js';
import type { StorageBackend } from './backends.js';
import { makeHome, type DaemonHome } from './daemon.js';

/** A migrated database on a fresh SQLite file or Postgres schema, for service-level tests without HTTP. */
export interface TestDatabase {
  database: Database;
  home: DaemonHome;
  close(): Promise<void>;
}

export async function openTestDatabase(
  backend: StorageBackend,
  options: { poolMax?: number; keepReads?: boolean } = {},
): Promise<TestDatabase> {
  const home = await makeHome({ backend });
  const database = new Database({
    url: home.databaseUrl,
    poolMax: options.poolMax ?? 10,
    connectTimeoutMs: 5000,
    busyTimeoutMs: 5000,
    logger: createLogger('silent'),
    keepReads: options.keepReads ?? false,
  });
  await migrateToLatest(database);
  return {
    database,
    home,
    async close() {
      await database.close();
      await home.cleanup();
    },
  };
}
