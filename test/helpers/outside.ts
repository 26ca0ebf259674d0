import { AccessTokens } from '../../daemon/auth/access-tokens.js';
import type { Scope, Tier } from '../../daemon/auth/principal.js';
import { PasswordHasher } from '../../daemon/auth/passwords.js';
import { MemoryAuditLogger } from '../../daemon/audit/types.js';
import { systemClock } from '../../daemon/clock.js';
import { CreditLedger } from '../../daemon/credits/ledger.js';
import { createLogger } from '../../daemon/logger.js';
import { Database } from '../../daemon/storage/database.js';
import { migrateToLatest } from '../../daemon/storage/migrator.js';
import { accountRepositories } from '../../daemon/storage/repos/accounts.js';
import { creditRepositories } from '../../daemon/storage/repos/credits.js';
import type { UserRow } from '../../daemon/storage/repos/users.js';
import { UserAdminService } from '../../daemon/users/user-admin.js';
import type { DaemonHome } from './daemon.js';
import { uniqueEmail } from './factories.js';

/** What a test made on a home's database from outside any daemon. Close `database` when done. */
export interface OutsideSetup {
  database: Database;
  ledger: CreditLedger;
  user: UserRow;
  /** An access token for `user`, signed with the home's JWT secret. */
  token: string;
}

/**
 * For tests whose daemons run as child processes: migrates the home's database
 * and makes a user holding `micros` micro-credits, with an access token, through
 * the daemon's own services, with no daemon running in this process.
 */
export async function prepareOutside(
  home: DaemonHome,
  options: { label: string; tier: Tier; micros: number; scopes: Scope[] },
): Promise<OutsideSetup> {
  const database = new Database({
    url: home.databaseUrl,
    poolMax: 2,
    connectTimeoutMs: 3000,
    busyTimeoutMs: 3000,
    logger: createLogger('silent'),
  });
  await migrateToLatest(database);
  const audit = new MemoryAuditLogger();
  const users = new UserAdminService({
    database,
    ...accountRepositories(database),
    clock: systemClock,
    hasher: new PasswordHasher({ maxConcurrent: 1 }),
    audit,
  });
  const user = await users.createUser(null, { email: uniqueEmail(options.label), tier: options.tier });
  const ledger = new CreditLedger({ database, repositories: creditRepositories(database), clock: systemClock, audit });
  await ledger.grant({
    userId: user.id,
    amount: options.micros as never,
    reason: options.label,
    actor: { type: 'system', id: null },
  });
  const tokens = new AccessTokens(Buffer.from(home.jwtSecret, 'utf8'), {
    issuer: 'keen-gateway',
    audience: 'keen-api',
    ttlSeconds: 900,
    clock: systemClock,
  });
  return {
    database,
    ledger,
    user,
    token: tokens.sign({ id: user.id, scopes: options.scopes, tier: user.tier, role: user.role, tenantId: null }),
  };
}
