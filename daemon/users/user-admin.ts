import type { AuditAction } from '../audit/actions.js';
import type { AuditLogger } from '../audit/types.js';
import type { ClientInfo } from '../auth/auth-service.js';
import { generateApiKey, hashSecret } from '../auth/api-key-format.js';
import { normalizeEmail, sameEmail } from '../auth/email.js';
import type { LoginThrottle } from '../auth/login-throttle.js';
import { checkPasswordPolicy, type PasswordHasher } from '../auth/passwords.js';
import { presentApiKey, presentTenant, presentUser } from '../auth/presenters.js';
import type { Principal, Role, Tier } from '../auth/principal.js';
import type { Clock } from '../clock.js';
import { GatewayError, notFound } from '../errors.js';
import { isId, newId } from '../ids.js';
import type { Database, Queryable } from '../storage/database.js';
import { CredentialRepository } from '../storage/repos/credentials.js';
import { UserRepository, type UserRow } from '../storage/repos/users.js';
import { EVERYTHING, assertPlatformAdmin, assertUserChange, effectiveRole, keyScopes, reachFor, suspendedBy, type Reach, type UserChange } from '../policies/index.js';

export interface CreateUserInput {
  email: string;
  password?: string;
  tier?: Tier;
  tenant_id?: string | null;
  role?: 'member' | 'admin';
}

export interface CreateKeyInput {
  name: string;
  scopes?: string[];
  rate_limit_per_hour?: number;
  expires_at?: string;
}

const actorOf = (p: Principal) => ({ type: 'admin' as const, id: p.userId });

/**
 * Users, tenants and API keys as administrators and their owners manage them.
 * Who may do what is decided in daemon/policies: the caller's reach is in every
 * query, and a row outside it answers 404 exactly like a row that does not
 * exist (and is audited as a probe).
 */
export class UserAdminService {
  private readonly users: UserRepository;
  private readonly creds: CredentialRepository;

  constructor(
    private readonly deps: { database: Database; clock: Clock; hasher: PasswordHasher; audit: AuditLogger; throttle?: LoginThrottle },
  ) {
    this.users = new UserRepository(deps.database.db);
    this.creds = new CredentialRepository(deps.database.db);
  }

  private async probe(actor: Principal, type: string, id: string, client?: ClientInfo): Promise<never> {
    await this.deps.audit.record({
      action: 'access.not_found',
      outcome: 'denied',
      actor: { type: actor.via === 'api_key' ? 'api_key' : 'user', id: actor.apiKeyId ?? actor.userId },
      tenantId: actor.tenantId,
      target: { type, id: String(id).slice(0, 64) },
      ip: client?.ip ?? null,
      userAgent: client?.userAgent ?? null,
      requestId: client?.requestId ?? null,
    });
    throw notFound(type);
  }

  /** Finds a user the actor may manage, by id or email; otherwise 404. */
  async findUser(actor: Principal, idOrEmail: string, client?: ClientInfo): Promise<UserRow> {
    const reach = reachFor(actor, 'admin');
    const user = isId(idOrEmail, 'usr')
      ? await this.users.findById(idOrEmail, reach)
      : idOrEmail.includes('@')
        ? await this.users.findByEmail(normalizeEmail(idOrEmail), reach)
        : undefined;
    return user ?? this.probe(actor, 'user', idOrEmail, client);
  }

  async createUser(actor: Principal | null, input: CreateUserInput, client?: ClientInfo, trx?: Queryable): Promise<UserRow> {
    const reach: Reach = actor ? reachFor(actor, 'admin') : EVERYTHING;
    const email = normalizeEmail(input.email);
    let tenantId = input.tenant_id ?? null;
    if ('tenantId' in reach) {
      if (tenantId !== null && tenantId !== reach.tenantId) return this.probe(actor!, 'tenant', tenantId, client);
      tenantId = reach.tenantId;
    }
    if (tenantId !== null && !(await this.users.findTenant(tenantId))) {
      return actor ? this.probe(actor, 'tenant', tenantId, client) : Promise.reject(notFound('tenant'));
    }
    const role: Role = input.role === 'admin' ? (tenantId === null ? 'platform_admin' : 'tenant_admin') : 'member';
    if (actor) assertUserChange(actor, null, { kind: 'create', role, tier: input.tier ?? 'individual' });
    const passwordHash = input.password === undefined ? null : await this.deps.hasher.hash(checkPasswordPolicy(input.password), actor ? { clients: [`user:${actor.userId}`] } : undefined);
    const now = this.deps.clock.now();
    const row: UserRow = {
      id: newId('usr', now),
      tenant_id: tenantId,
      email,
      password_hash: passwordHash,
      status: 'active',
      suspended_by_role: null,
      tier: input.tier ?? 'individual',
      role,
      mfa_enabled: 0,
      mfa_secret_enc: null,
      mfa_last_step: null,
      tokens_not_before: 0,
      created_at: now,
      updated_at: now,
      last_login_at: null,
    };
    const write = async (q: Queryable) => {
      const repo = this.users.with(q);
      if (await repo.findByEmail(email)) throw new GatewayError('ALREADY_EXISTS', 'a user with this email already exists');
      try {
        await repo.insert(row);
      } catch (err) {
        if (isUniqueViolation(err)) throw new GatewayError('ALREADY_EXISTS', 'a user with this email already exists');
        throw err;
      }
      await this.deps.audit.record(
        {
          action: 'user.create',
          outcome: 'success',
          actor: actor ? actorOf(actor) : { type: 'system', id: null },
          tenantId,
          target: { type: 'user', id: row.id },
          ip: client?.ip ?? null,
          userAgent: client?.userAgent ?? null,
          requestId: client?.requestId ?? null,
          details: { email, role, tier: row.tier },
        },
        q,
      );
    };
    if (trx) await write(trx);
    else await this.deps.database.transaction(write);
    return row;
  }

  async listUsers(actor: Principal, options: { limit: number; cursor?: string | null; email?: string }) {
    const reach = reachFor(actor, 'admin');
    if (options.email) {
      const u = await this.users.findByEmail(normalizeEmail(options.email), reach);
      return { users: u ? [presentUser(u)] : [], next_cursor: null };
    }
    const rows = await this.users.list(reach, { limit: options.limit + 1, after: options.cursor ?? null });
    const page = rows.slice(0, options.limit);
    return { users: page.map(presentUser), next_cursor: rows.length > options.limit ? page[page.length - 1]!.id : null };
  }

  private async change(actor: Principal, idOrEmail: string, action: AuditAction, what: UserChange, patch: (u: UserRow) => Partial<UserRow>, client?: ClientInfo) {
    const user = await this.findUser(actor, idOrEmail, client);
    try {
      assertUserChange(actor, user, what);
    } catch (err) {
      if (err instanceof GatewayError && err.code === 'FORBIDDEN') {
        await this.deps.audit.record({
          action,
          outcome: 'denied',
          actor: actorOf(actor),
          tenantId: user.tenant_id,
          target: { type: 'user', id: user.id },
          ip: client?.ip ?? null,
          userAgent: client?.userAgent ?? null,
          requestId: client?.requestId ?? null,
          details: { reason: err.message },
        });
      }
      throw err;
    }
    const now = this.deps.clock.now();
    const next = { ...patch(user), updated_at: now };
    await this.deps.database.transaction(async (trx) => {
      await this.users.with(trx).update(user.id, next);
      if (next.status === 'suspended' || next.mfa_enabled === 0) await this.creds.with(trx).revokeAllForUser(user.id);
      if (next.mfa_enabled === 0) await this.users.with(trx).replaceRecoveryCodes(user.id, []);
      await this.deps.audit.record(
        {
          action,
          outcome: 'success',
          actor: actorOf(actor),
          tenantId: user.tenant_id,
          target: { type: 'user', id: user.id },
          ip: client?.ip ?? null,
          userAgent: client?.userAgent ?? null,
          requestId: client?.requestId ?? null,
          details: next.tier ? { from: user.tier, to: next.tier } : {},
        },
        trx,
      );
    });
    return presentUser({ ...user, ...next });
  }

  suspend(actor: Principal, id: string, client?: ClientInfo) {
    if (id === actor.userId || sameEmail(id, actor.email)) throw new GatewayError('INVALID_STATE', 'you cannot suspend yourself');
    // Tokens issued so far stop working at once.
    return this.change(
      actor,
      id,
      'user.suspend',
      { kind: 'suspend' },
      (u) => ({ status: 'suspended', suspended_by_role: suspendedBy(actor, u), tokens_not_before: this.deps.clock.now() + 1 }),
      client,
    );
  }

  activate(actor: Principal, id: string, client?: ClientInfo) {
    return this.change(actor, id, 'user.activate', { kind: 'activate' }, () => ({ status: 'active', suspended_by_role: null }), client);
  }

  setTier(actor: Principal, id: string, tier: Tier, client?: ClientInfo) {
    return this.change(actor, id, 'user.set_tier', { kind: 'set_tier', tier }, () => ({ tier }), client);
  }

  resetMfa(actor: Principal, id: string, client?: ClientInfo) {
    return this.change(actor, id, 'user.reset_mfa', { kind: 'reset_mfa' }, () => ({ mfa_enabled: 0, mfa_secret_enc: null, mfa_last_step: null, tokens_not_before: this.deps.clock.now() + 1 }), client);
  }

  /**
   * Lifts the sign-in back-off of a user's email (failed checks from every
   * address, LoginThrottle): the owner signs in at once from an address of
   * their own. Addresses that failed themselves stay throttled for their
   * window. The same reach as suspend and activate.
   */
  async unlock(actor: Principal, id: string, client?: ClientInfo) {
    const user = await this.findUser(actor, id, client);
    await this.deps.throttle?.unlock(user.email);
    await this.deps.audit.record({
      action: 'user.unlock',
      outcome: 'success',
      actor: actorOf(actor),
      tenantId: user.tenant_id,
      target: { type: 'user', id: user.id },
      ip: client?.ip ?? null,
      userAgent: client?.userAgent ?? null,
      requestId: client?.requestId ?? null,
      details: {},
    });
    return presentUser(user);
  }

  async createTenant(actor: Principal, name: string, client?: ClientInfo) {
    assertPlatformAdmin(actor, 'create tenants');
    const clean = name.normalize('NFKC').trim();
    const now = this.deps.clock.now();
    const row = { id: newId('ten', now), name: clean, created_at: now };
    await this.deps.database.transaction(async (trx) => {
      const repo = this.users.with(trx);
      if (await repo.findTenantByName(clean)) throw new GatewayError('ALREADY_EXISTS', 'a tenant with this name already exists');
      await repo.insertTenant(row);
      await this.deps.audit.record(
        { action: 'tenant.create', outcome: 'success', actor: actorOf(actor), tenantId: row.id, target: { type: 'tenant', id: row.id }, ip: client?.ip ?? null, userAgent: client?.userAgent ?? null, requestId: client?.requestId ?? null, details: { name: clean } },
        trx,
      );
    });
    return presentTenant(row);
  }

  async listTenants(actor: Principal, options: { limit: number; cursor?: string | null }) {
    const rows = await this.users.listTenants(reachFor(actor, 'admin'), { limit: options.limit + 1, after: options.cursor ?? null });
    const page = rows.slice(0, options.limit);
    return { tenants: page.map(presentTenant), next_cursor: rows.length > options.limit ? page[page.length - 1]!.id : null };
  }

  /**
   * Creates an API key for `owner`; returns the key once. Its scopes are held by
   * the owner's role and by the credential creating it (daemon/policies `keyScopes`).
   */
  async createApiKey(actor: Principal | null, owner: UserRow, input: CreateKeyInput, client?: ClientInfo, trx?: Queryable) {
    const scopes = keyScopes(actor, owner.role, input.scopes);
    const now = this.deps.clock.now();
    let expiresAt: number | null = null;
    if (input.expires_at !== undefined) {
      expiresAt = Date.parse(input.expires_at);
      if (!Number.isFinite(expiresAt) || expiresAt <= now) {
        throw new GatewayError('INVALID_FIELD', 'expires_at must be a date-time in the future', { details: [{ field: 'expires_at', message: 'must be in the future' }] });
      }
    }
    const key = generateApiKey();
    const row = {
      id: newId('key', now),
      user_id: owner.id,
      tenant_id: owner.tenant_id,
      name: input.name.trim(),
      key_hash: hashSecret(key),
      key_prefix: key.slice(0, 12),
      scopes: JSON.stringify(scopes),
      rate_limit_per_hour: input.rate_limit_per_hour ?? 1000,
      expires_at: expiresAt,
      revoked_at: null,
      last_used_at: null,
      created_at: now,
    };
    const write = async (q: Queryable) => {
      await this.creds.with(q).insertApiKey(row);
      await this.deps.audit.record(
        {
          action: 'key.create',
          outcome: 'success',
          actor: actor ? { type: effectiveRole(actor) === 'member' || actor.userId === owner.id ? 'user' : 'admin', id: actor.userId } : { type: 'system', id: null },
          tenantId: owner.tenant_id,
          target: { type: 'api_key', id: row.id },
          ip: client?.ip ?? null,
          userAgent: client?.userAgent ?? null,
          requestId: client?.requestId ?? null,
          details: { owner_id: owner.id, name: row.name, scopes },
        },
        q,
      );
    };
    if (trx) await write(trx);
    else await this.deps.database.transaction(write);
    return { api_key: presentApiKey(row, now), key };
  }

  async ownUser(principal: Principal): Promise<UserRow> {
    const u = await this.users.findById(principal.userId);
    if (!u) throw new GatewayError('INVALID_TOKEN', 'credential is invalid');
    return u;
  }

  /** Keys within `reach` (daemon/policies `reachFor`): one user's, a tenant's, or every key. */
  async listApiKeys(reach: Reach, limit = 100) {
    const now = this.deps.clock.now();
    return (await this.creds.listApiKeys(reach, limit)).map((k) => presentApiKey(k, now));
  }

  /** Revokes a key the actor may manage: its own (owner) or, for admins, one within their reach. */
  async revokeApiKey(actor: Principal, id: string, asAdmin: boolean, client?: ClientInfo) {
    const row = isId(id, 'key') ? await this.creds.findApiKey(id, reachFor(actor, asAdmin ? 'admin' : 'self')) : undefined;
    if (!row) return this.probe(actor, 'api_key', id, client);
    const now = this.deps.clock.now();
    await this.deps.database.transaction(async (trx) => {
      await this.creds.with(trx).revokeApiKey(row.id, now);
      await this.deps.audit.record(
        { action: 'key.revoke', outcome: 'success', actor: { type: asAdmin ? 'admin' : 'user', id: actor.userId }, tenantId: row.tenant_id, target: { type: 'api_key', id: row.id }, ip: client?.ip ?? null, userAgent: client?.userAgent ?? null, requestId: client?.requestId ?? null, details: { owner_id: row.user_id } },
        trx,
      );
    });
    return presentApiKey({ ...row, revoked_at: row.revoked_at ?? now }, now);
  }

  /** `keen-admin init`: the first platform admin and its API key, refused once one exists. */
  async bootstrap(input: { email: string; password?: string }) {
    return this.deps.database.transaction(async (trx) => {
      if ((await this.users.with(trx).countPlatformAdmins()) > 0) {
        throw new GatewayError('ALREADY_EXISTS', 'a platform administrator already exists; use keen-admin users create');
      }
      const user = await this.createUser(null, { email: input.email, password: input.password, role: 'admin', tier: 'enterprise' }, undefined, trx);
      const created = await this.createApiKey(null, user, { name: 'keen-admin (init)' }, undefined, trx);
      return { user: presentUser(user), ...created };
    });
  }
}

/** Unique-constraint violations of both drivers. */
export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return e?.code === '23505' || e?.code === 'SQLITE_CONSTRAINT_UNIQUE' || e?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || /UNIQUE constraint failed/.test(e?.message ?? '');
}
