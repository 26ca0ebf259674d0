import { randomBytes } from 'node:crypto';
import { DatabaseAuditLogger } from '../../../daemon/audit/store.js';
import { systemClock } from '../../../daemon/clock.js';
import { createLogger } from '../../../daemon/logger.js';
import { PasswordHasher } from '../../../daemon/auth/passwords.js';
import { Database } from '../../../daemon/storage/database.js';
import { migrateToLatest } from '../../../daemon/storage/migrator.js';
import { UserAdminService } from '../../../daemon/users/user-admin.js';
import { accountRepositories } from '../../../daemon/storage/repos/accounts.js';
import { AuditRepository } from '../../../daemon/storage/repos/audit.js';
import type { Api, ApiResponse } from '../../helpers/http.js';
import { uniqueEmail } from '../../helpers/factories.js';

export { TcpProxy, eventually, deleteKeys, testRedis, ready } from '../../unit/limits/support.js';

/** A Redis key prefix for one suite, shared by the daemons that must see the same counters. */
export const suitePrefix = (name: string): string => `keen-test:limits-${name}-${randomBytes(4).toString('hex')}:`;

/**
 * What `keen-admin init` does, directly on the database: migrations, then the
 * first platform admin and its API key. Returns the key.
 */
export async function bootstrapAdmin(databaseUrl: string): Promise<string> {
  const logger = createLogger('silent');
  const database = new Database({ url: databaseUrl, poolMax: 2, connectTimeoutMs: 5000, busyTimeoutMs: 5000, logger });
  let audit: DatabaseAuditLogger | undefined;
  try {
    await migrateToLatest(database);
    audit = new DatabaseAuditLogger({ database, audits: new AuditRepository(database), clock: systemClock, logger });
    const service = new UserAdminService({
      database,
      ...accountRepositories(database),
      clock: systemClock,
      hasher: new PasswordHasher({ maxConcurrent: 1 }),
      audit,
    });
    const r = await service.bootstrap({ email: uniqueEmail('ops') });
    return r.key;
  } finally {
    await audit?.close();
    await database.close();
  }
}

function expectStatus(r: ApiResponse, status: number, what: string): void {
  if (r.status !== status) throw new Error(`${what}: expected ${status}, got ${r.status} ${r.text}`);
}

/** A user made through the admin API, with an API key made the same way. */
export async function userWithKey(
  api: Api,
  adminKey: string,
  options: { tier?: 'individual' | 'team' | 'enterprise'; password?: string; keyLimitPerHour?: number } = {},
): Promise<{ userId: string; email: string; key: string; keyId: string }> {
  const email = uniqueEmail('rl');
  const u = await api.post(
    '/v1/admin/users',
    { email, tier: options.tier ?? 'individual', ...(options.password ? { password: options.password } : {}) },
    { apiKey: adminKey },
  );
  expectStatus(u, 201, 'create user');
  const k = await api.post(
    '/v1/admin/api-keys',
    {
      user_id: u.body.user.id,
      name: 'limits test',
      ...(options.keyLimitPerHour ? { rate_limit_per_hour: options.keyLimitPerHour } : {}),
    },
    { apiKey: adminKey },
  );
  expectStatus(k, 201, 'create api key');
  return { userId: u.body.user.id, email, key: k.body.key, keyId: k.body.api_key.id };
}

/** The value of one Prometheus sample (`name{labels}`) in a /metrics text, 0 when absent. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries(
      (m[2] ?? '')
        .split(',')
        .filter(Boolean)
        .map((kv) => {
          const i = kv.indexOf('=');
          return [kv.slice(0, i), kv.slice(i + 2, -1)];
        }),
    );
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return 0;
}

/** Every response carries the RateLimit headers documented in docs/rate-limits.md. */
export function hasRateLimitHeaders(r: ApiResponse): boolean {
  return ['ratelimit-policy', 'ratelimit', 'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset'].every(
    (h) => r.headers.get(h) !== null,
  );
}
