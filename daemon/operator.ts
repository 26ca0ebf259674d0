/**
 * What keen-admin's init, doctor and backup need for their work on the daemon's own database and
 * files (biome.json: only those three commands may import it, besides daemon/cli-shared.ts). Each is
 * its own composition root: it opens the database with the daemon's config, as the daemon does.
 */
export { Sandbox } from './agents/sandbox.js';
export { DatabaseAuditLogger } from './audit/store.js';
export { MIN_SECRET_BYTES } from './auth/jwt-secret.js';
export { inspectMfaSecrets } from './auth/mfa-secrets.js';
export { PasswordHasher } from './auth/passwords.js';
export { BackupError, createBackup } from './backup/snapshot.js';
export { systemClock } from './clock.js';
export { GatewayError } from './errors.js';
// biome-ignore lint/style/noRestrictedImports: init prints the first admin and key as the API presents them.
export { presentBootstrap } from './http/presenters/users.js';
export { createLogger } from './logger.js';
export { type Database, databaseFromConfig } from './storage/database.js';
export { readDatabaseId } from './storage/database-id.js';
export { migrateToLatest, pendingMigrations } from './storage/migrator.js';
export { accountRepositories } from './storage/repos/accounts.js';
export { AuditRepository } from './storage/repos/audit.js';
export { UserRepository } from './storage/repos/users.js';
export { UserAdminService } from './users/user-admin.js';

/** The Redis client factory, loaded when called: ioredis would add to the start-up time of every other command. */
export const loadRedis = () => import('./redis.js');
