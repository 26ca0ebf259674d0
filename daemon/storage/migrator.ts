import { Migrator, sql, type MigrationResultSet } from 'kysely';
import type { Database } from './database.js';
import { MIGRATIONS } from './migrations/index.js';

export interface MigrationReport {
  applied: string[];
  current: string | null;
}

/**
 * Kysely looks for its bookkeeping tables by name across every schema it can see;
 * on Postgres we name the schema in use (search_path), so two installations in
 * one database never mistake each other's tables for their own.
 */
async function migratorFor(database: Database): Promise<Migrator> {
  let migrationTableSchema: string | undefined;
  if (database.dialect === 'postgres') {
    const r = await sql<{ schema: string }>`select current_schema() as schema`.execute(database.db);
    migrationTableSchema = r.rows[0]?.schema ?? undefined;
  }
  return new Migrator({
    db: database.db,
    provider: { getMigrations: async () => MIGRATIONS },
    ...(migrationTableSchema ? { migrationTableSchema } : {}),
  });
}

/** Applies every pending migration. Safe to run from several daemons at once: Kysely takes a lock table. */
export async function migrateToLatest(database: Database): Promise<MigrationReport> {
  const migrator = await migratorFor(database);
  const result: MigrationResultSet = await migrator.migrateToLatest();
  if (result.error) {
    const failed = result.results?.find((r) => r.status === 'Error');
    const cause = result.error instanceof Error ? result.error : new Error(String(result.error));
    throw new Error(`migration ${failed?.migrationName ?? '(unknown)'} failed: ${cause.message}`, { cause });
  }
  const applied = (result.results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
  return { applied, current: latestMigration() };
}

/** The pending migrations, without applying them (for `doctor`). */
export async function pendingMigrations(database: Database): Promise<string[]> {
  const migrator = await migratorFor(database);
  const all = await migrator.getMigrations();
  return all.filter((m) => !m.executedAt).map((m) => m.name);
}

export function latestMigration(): string | null {
  const names = Object.keys(MIGRATIONS).sort();
  return names[names.length - 1] ?? null;
}
