import { randomBytes } from 'node:crypto';
import type { Tier } from '../../daemon/auth/principal.js';
import type { UserRow } from '../../daemon/storage/repos/users.js';
import type { TestDaemon } from './daemon.js';

export interface TestUser {
  user: UserRow;
  email: string;
  password: string;
  /** An access token minted by the daemon's own signer (no login round trip). */
  token: string;
}

let counter = 0;
export const uniqueEmail = (prefix = 'user'): string =>
  `${prefix}-${Date.now().toString(36)}-${counter++}-${randomBytes(3).toString('hex')}@example.test`;

/**
 * A user made through the daemon's own service (as an admin would), with a
 * password when `withPassword` (argon2 is slow: only the tests that log in need it).
 */
export async function buildUser(
  d: TestDaemon,
  overrides: {
    email?: string;
    role?: 'member' | 'admin';
    tier?: Tier;
    tenantId?: string | null;
    withPassword?: boolean;
    password?: string;
  } = {},
): Promise<TestUser> {
  const email = overrides.email ?? uniqueEmail();
  const password = overrides.password ?? `pw-${randomBytes(12).toString('hex')}`;
  const user = await d.container.users.createUser(null, {
    email,
    ...(overrides.withPassword || overrides.password ? { password } : {}),
    role: overrides.role ?? 'member',
    tier: overrides.tier ?? 'individual',
    tenant_id: overrides.tenantId ?? null,
  });
  return { user, email: user.email, password, token: mintToken(d, user) };
}

export function mintToken(d: TestDaemon, user: UserRow): string {
  const scopes =
    user.role === 'member'
      ? (['agents:execute', 'sessions:read', 'credits:read', 'keys:manage'] as const)
      : (['agents:execute', 'sessions:read', 'credits:read', 'keys:manage', 'admin'] as const);
  return d.container.accessTokens.sign({
    id: user.id,
    scopes: [...scopes],
    tier: user.tier,
    role: user.role,
    tenantId: user.tenant_id,
  });
}

export async function buildTenant(d: TestDaemon, name = `tenant-${randomBytes(4).toString('hex')}`): Promise<string> {
  const admin = await platformAdmin(d);
  const t = await d.container.users.createTenant(principal(admin), name);
  return t.id;
}

const admins = new WeakMap<TestDaemon, UserRow>();
/** One platform admin per daemon, made on first use. */
export async function platformAdmin(d: TestDaemon): Promise<UserRow> {
  let a = admins.get(d);
  if (!a) {
    a = (await buildUser(d, { role: 'admin', tier: 'enterprise' })).user;
    admins.set(d, a);
  }
  return a;
}

export function principal(u: UserRow) {
  return {
    userId: u.id,
    tenantId: u.tenant_id,
    email: u.email,
    role: u.role,
    tier: u.tier,
    scopes:
      u.role === 'member'
        ? (['agents:execute', 'sessions:read', 'credits:read', 'keys:manage'] as never[])
        : (['agents:execute', 'sessions:read', 'credits:read', 'keys:manage', 'admin'] as never[]),
    via: 'jwt' as const,
    apiKeyId: null,
    apiKeyRateLimitPerHour: null,
  };
}

/** An API key for `user`, made through the API. */
export async function buildApiKey(
  d: TestDaemon,
  u: TestUser,
  body: Record<string, unknown> = {},
): Promise<{ id: string; key: string }> {
  const r = await d.api.post('/v1/api-keys', { name: 'test key', ...body }, { token: u.token });
  if (r.status !== 201) throw new Error(`api key creation failed: ${r.status} ${r.text}`);
  return { id: r.body.api_key.id, key: r.body.key };
}

/** The audit entries the daemon committed, oldest first, as `action:outcome` plus the rows. */
export async function auditRows(d: TestDaemon) {
  return d.container.database.db.selectFrom('audit_log').selectAll().orderBy('seq', 'asc').execute();
}

export async function auditActions(d: TestDaemon): Promise<string[]> {
  return (await auditRows(d)).map((r) => `${r.action}:${r.outcome}`);
}
