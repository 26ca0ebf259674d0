import type {
  AdminUserCreateRequest,
  ApiKeyCreateRequest,
  ApiKeyRollRequest,
  ApiKeyUpdateRequest,
} from '../../schemas/types.gen.js';
import type { AuditAction } from '../audit/actions.js';
import { parseBudget, type BudgetAdmin } from '../credits/budget-admin.js';
import type { BudgetStatus } from '../credits/budgets.js';
import { accountActor, actorOf, auditContext } from '../audit/actor.js';
import type { AuditLogger } from '../audit/types.js';
import type { ClientInfo } from '../auth/auth-service.js';
import { generateApiKey, hashSecret } from '../auth/api-key-format.js';
import { normalizeEmail, sameEmail } from '../auth/email.js';
import type { LoginThrottle } from '../auth/login-throttle.js';
import { checkPasswordPolicy, type PasswordHasher } from '../auth/passwords.js';
import type { Principal, Role, Tier } from '../auth/principal.js';
import { iso, type Clock } from '../clock.js';
import { GatewayError, notFound } from '../errors.js';
import { isId, newId } from '../ids.js';
import type { Database, Queryable } from '../storage/database.js';
import type { ApiKeyRow, CredentialRepository } from '../storage/repos/credentials.js';
import type { TenantRow, UserRepository, UserRow } from '../storage/repos/users.js';
import {
  EVERYTHING,
  assertPlatformAdmin,
  assertUserChange,
  effectiveRole,
  keyScopes,
  reachFor,
  suspendedBy,
  type Reach,
  type UserChange,
} from '../policies/index.js';

/** `POST /v1/admin/users` (schemas/api/AdminUserCreateRequest.json); `keen-admin init` too. */
export type CreateUserInput = AdminUserCreateRequest;

/** `POST /v1/api-keys` (schemas/api/ApiKeyCreateRequest.json); `budget` is set with the key in one transaction. */
export type CreateKeyInput = ApiKeyCreateRequest;

/** An API key as the service returns it: its row, read at `at`, with its budget where the answer shows one. */
export interface ApiKeyView {
  row: ApiKeyRow;
  /** When it was read: whether it has expired, and whether its previous secret still works, depend on it. */
  at: number;
  /** Its budget with this period's use (null: none); absent where the answer shows no budget. */
  budget?: BudgetStatus | null;
}

/** A key just made or given a new secret: the secret, in this answer only. */
export interface IssuedApiKey extends ApiKeyView {
  key: string;
}

/** A key given a new secret: until when the one it had keeps working. */
export interface RolledApiKey extends IssuedApiKey {
  previousExpiresAt: number;
}

/** Users by id; `nextCursor` continues the page. */
export interface UserPage {
  users: UserRow[];
  nextCursor: string | null;
}

/** Tenants by id; `nextCursor` continues the page. */
export interface TenantPage {
  tenants: TenantRow[];
  nextCursor: string | null;
}

/**
 * `PATCH /v1/api-keys/:id`, `PATCH /v1/admin/api-keys/:id` (schemas/api/ApiKeyUpdateRequest.json): a field
 * left out is left as it is; `expires_at: null` clears it, `budget: null` removes it (only by the role
 * that set it or a higher one).
 */
export type UpdateKeyInput = ApiKeyUpdateRequest;

/** `POST /v1/api-keys/:id/roll` (schemas/api/ApiKeyRollRequest.json): how long the old secret keeps working, in seconds. */
export type RollKeyInput = ApiKeyRollRequest;

/** The grace period of a roll when none is given (24 h), and the longest allowed (30 days). */
export const DEFAULT_ROLL_GRACE_SECONDS = 86_400;
export const MAX_ROLL_GRACE_SECONDS = 30 * 86_400;

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
    private readonly deps: {
      database: Database;
      users: UserRepository;
      credentials: CredentialRepository;
      clock: Clock;
      hasher: PasswordHasher;
      audit: AuditLogger;
      throttle?: LoginThrottle;
      budgets?: BudgetAdmin;
    },
  ) {
    this.users = deps.users;
    this.creds = deps.credentials;
  }

  private async probe(actor: Principal, type: string, id: string, client?: ClientInfo): Promise<never> {
    await this.deps.audit.record({
      action: 'access.not_found',
      outcome: 'denied',
      actor: actorOf(actor),
      tenantId: actor.tenantId,
      target: { type, id: String(id).slice(0, 64) },
      ...auditContext(client),
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

  async createUser(
    actor: Principal | null,
    input: CreateUserInput,
    client?: ClientInfo,
    trx?: Queryable,
  ): Promise<UserRow> {
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
    const passwordHash =
      input.password === undefined
        ? null
        : await this.deps.hasher.hash(
            checkPasswordPolicy(input.password),
            actor ? { clients: [`user:${actor.userId}`] } : undefined,
          );
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
      if (await repo.findByEmail(email))
        throw new GatewayError('ALREADY_EXISTS', 'a user with this email already exists');
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
          actor: accountActor(actor, true),
          tenantId,
          target: { type: 'user', id: row.id },
          ...auditContext(client),
          details: { email, role, tier: row.tier },
        },
        q,
      );
    };
    if (trx) await write(trx);
    else await this.deps.database.transaction(write);
    return row;
  }

  async listUsers(
    actor: Principal,
    options: { limit: number; cursor?: string | null; email?: string },
  ): Promise<UserPage> {
    const reach = reachFor(actor, 'admin');
    if (options.email) {
      const u = await this.users.findByEmail(normalizeEmail(options.email), reach);
      return { users: u ? [u] : [], nextCursor: null };
    }
    const rows = await this.users.list(reach, { limit: options.limit + 1, after: options.cursor ?? null });
    const page = rows.slice(0, options.limit);
    return { users: page, nextCursor: rows.length > options.limit ? page[page.length - 1]!.id : null };
  }

  private async change(
    actor: Principal,
    idOrEmail: string,
    action: AuditAction,
    what: UserChange,
    patch: (u: UserRow) => Partial<UserRow>,
    client?: ClientInfo,
  ): Promise<UserRow> {
    const user = await this.findUser(actor, idOrEmail, client);
    try {
      assertUserChange(actor, user, what);
    } catch (err) {
      if (err instanceof GatewayError && err.code === 'FORBIDDEN') {
        await this.deps.audit.record({
          action,
          outcome: 'denied',
          actor: accountActor(actor, true),
          tenantId: user.tenant_id,
          target: { type: 'user', id: user.id },
          ...auditContext(client),
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
          actor: accountActor(actor, true),
          tenantId: user.tenant_id,
          target: { type: 'user', id: user.id },
          ...auditContext(client),
          details: next.tier ? { from: user.tier, to: next.tier } : {},
        },
        trx,
      );
    });
    return { ...user, ...next };
  }

  suspend(actor: Principal, id: string, client?: ClientInfo) {
    if (id === actor.userId || sameEmail(id, actor.email))
      throw new GatewayError('INVALID_STATE', 'you cannot suspend yourself');
    // Tokens issued so far stop working at once.
    return this.change(
      actor,
      id,
      'user.suspend',
      { kind: 'suspend' },
      (u) => ({
        status: 'suspended',
        suspended_by_role: suspendedBy(actor, u),
        tokens_not_before: this.deps.clock.now() + 1,
      }),
      client,
    );
  }

  activate(actor: Principal, id: string, client?: ClientInfo) {
    return this.change(
      actor,
      id,
      'user.activate',
      { kind: 'activate' },
      () => ({ status: 'active', suspended_by_role: null }),
      client,
    );
  }

  setTier(actor: Principal, id: string, tier: Tier, client?: ClientInfo) {
    return this.change(actor, id, 'user.set_tier', { kind: 'set_tier', tier }, () => ({ tier }), client);
  }

  resetMfa(actor: Principal, id: string, client?: ClientInfo) {
    return this.change(
      actor,
      id,
      'user.reset_mfa',
      { kind: 'reset_mfa' },
      () => ({
        mfa_enabled: 0,
        mfa_secret_enc: null,
        mfa_last_step: null,
        tokens_not_before: this.deps.clock.now() + 1,
      }),
      client,
    );
  }

  /**
   * Lifts the sign-in back-off of a user's email (failed checks from every
   * address, LoginThrottle): the owner signs in at once from an address of
   * their own. Addresses that failed themselves stay throttled for their
   * window. The same reach as suspend and activate.
   */
  async unlock(actor: Principal, id: string, client?: ClientInfo): Promise<UserRow> {
    const user = await this.findUser(actor, id, client);
    await this.deps.throttle?.unlock(user.email);
    await this.deps.audit.record({
      action: 'user.unlock',
      outcome: 'success',
      actor: accountActor(actor, true),
      tenantId: user.tenant_id,
      target: { type: 'user', id: user.id },
      ...auditContext(client),
      details: {},
    });
    return user;
  }

  async createTenant(actor: Principal, name: string, client?: ClientInfo): Promise<TenantRow> {
    assertPlatformAdmin(actor, 'create tenants');
    const clean = name.normalize('NFKC').trim();
    const now = this.deps.clock.now();
    const row = { id: newId('ten', now), name: clean, created_at: now };
    await this.deps.database.transaction(async (trx) => {
      const repo = this.users.with(trx);
      if (await repo.findTenantByName(clean))
        throw new GatewayError('ALREADY_EXISTS', 'a tenant with this name already exists');
      await repo.insertTenant(row);
      await this.deps.audit.record(
        {
          action: 'tenant.create',
          outcome: 'success',
          actor: accountActor(actor, true),
          tenantId: row.id,
          target: { type: 'tenant', id: row.id },
          ...auditContext(client),
          details: { name: clean },
        },
        trx,
      );
    });
    return row;
  }

  async listTenants(actor: Principal, options: { limit: number; cursor?: string | null }): Promise<TenantPage> {
    const rows = await this.users.listTenants(reachFor(actor, 'admin'), {
      limit: options.limit + 1,
      after: options.cursor ?? null,
    });
    const page = rows.slice(0, options.limit);
    return { tenants: page, nextCursor: rows.length > options.limit ? page[page.length - 1]!.id : null };
  }

  /**
   * Creates an API key for `owner`; returns the key once. Its scopes are held by
   * the owner's role and by the credential creating it (daemon/policies `keyScopes`).
   */
  async createApiKey(
    actor: Principal | null,
    owner: UserRow,
    input: CreateKeyInput,
    client?: ClientInfo,
    trx?: Queryable,
  ): Promise<IssuedApiKey> {
    const scopes = keyScopes(actor, owner.role, input.scopes);
    const now = this.deps.clock.now();
    const expiresAt = input.expires_at === undefined ? null : futureTime(input.expires_at, now);
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
      previous_key_hash: null,
      previous_key_prefix: null,
      previous_expires_at: null,
      rolled_at: null,
      expiry_notified_at: null,
    };
    if (input.budget !== undefined) parseBudget(input.budget); // refuse a bad budget before anything is written
    let budget: BudgetStatus | null = null;
    const write = async (q: Queryable) => {
      await this.creds.with(q).insertApiKey(row);
      if (input.budget !== undefined && this.deps.budgets) {
        budget = await this.deps.budgets.set(
          actor,
          { subject: 'api_key', id: row.id, tenantId: owner.tenant_id },
          input.budget,
          client,
          q,
        );
      }
      await this.deps.audit.record(
        {
          action: 'key.create',
          outcome: 'success',
          actor: accountActor(actor, actor !== null && effectiveRole(actor) !== 'member' && actor.userId !== owner.id),
          tenantId: owner.tenant_id,
          target: { type: 'api_key', id: row.id },
          ...auditContext(client),
          details: { owner_id: owner.id, name: row.name, scopes },
        },
        q,
      );
    };
    if (trx) await write(trx);
    else await this.deps.database.transaction(write);
    return { row, at: now, budget, key };
  }

  async ownUser(principal: Principal): Promise<UserRow> {
    const u = await this.users.findById(principal.userId);
    if (!u) throw new GatewayError('INVALID_TOKEN', 'credential is invalid');
    return u;
  }

  /** Keys within `reach` (daemon/policies `reachFor`): one user's, a tenant's, or every key. */
  async listApiKeys(reach: Reach, limit = 100): Promise<ApiKeyView[]> {
    const now = this.deps.clock.now();
    const rows = await this.creds.listApiKeys(reach, limit);
    const budgets = this.deps.budgets
      ? await this.deps.budgets.ofKeys(rows.map((k) => k.id))
      : new Map<string, BudgetStatus>();
    return rows.map((row) => ({ row, at: now, budget: budgets.get(row.id) ?? null }));
  }

  /** Revokes a key the actor may manage: its own (owner) or, for admins, one within their reach. */
  async revokeApiKey(actor: Principal, id: string, asAdmin: boolean, client?: ClientInfo): Promise<ApiKeyView> {
    const row = isId(id, 'key')
      ? await this.creds.findApiKey(id, reachFor(actor, asAdmin ? 'admin' : 'self'))
      : undefined;
    if (!row) return this.probe(actor, 'api_key', id, client);
    const now = this.deps.clock.now();
    await this.deps.database.transaction(async (trx) => {
      await this.creds.with(trx).revokeApiKey(row.id, now);
      await this.deps.audit.record(
        {
          action: 'key.revoke',
          outcome: 'success',
          actor: accountActor(actor, asAdmin),
          tenantId: row.tenant_id,
          target: { type: 'api_key', id: row.id },
          ...auditContext(client),
          details: { owner_id: row.user_id },
        },
        trx,
      );
    });
    return { row: { ...row, revoked_at: row.revoked_at ?? now }, at: now };
  }

  /**
   * A key the actor may manage (its own, or for admins one within their reach;
   * otherwise 404, audited as a probe) that is still live: 409 INVALID_STATE for
   * a revoked or expired key.
   */
  private async liveKey(
    actor: Principal,
    id: string,
    asAdmin: boolean,
    what: string,
    client?: ClientInfo,
  ): Promise<ApiKeyRow> {
    const row = isId(id, 'key')
      ? await this.creds.findApiKey(id, reachFor(actor, asAdmin ? 'admin' : 'self'))
      : undefined;
    if (!row) return this.probe(actor, 'api_key', id, client);
    const now = this.deps.clock.now();
    if (row.revoked_at !== null)
      throw new GatewayError('INVALID_STATE', `this API key is revoked: a revoked key cannot be ${what}`);
    if (row.expires_at !== null && row.expires_at <= now)
      throw new GatewayError('INVALID_STATE', `this API key has expired: an expired key cannot be ${what}`);
    return row;
  }

  /**
   * Changes a key's name, scopes, rate limit or expiry (a field left out stays
   * as it is). New scopes follow the rules of creation (`keyScopes`): held by
   * the key owner's role and by the credential making the change, 403
   * INSUFFICIENT_SCOPE otherwise. Audited as `key.update` with the names of the
   * fields changed.
   */
  async updateApiKey(
    actor: Principal,
    id: string,
    input: UpdateKeyInput,
    asAdmin: boolean,
    client?: ClientInfo,
  ): Promise<ApiKeyView> {
    const row = await this.liveKey(actor, id, asAdmin, 'updated', client);
    const now = this.deps.clock.now();
    const patch: Partial<Pick<ApiKeyRow, 'name' | 'scopes' | 'rate_limit_per_hour' | 'expires_at'>> = {};
    if (input.name !== undefined) patch.name = input.name.trim();
    if (input.scopes !== undefined) {
      const owner = await this.users.findById(row.user_id);
      if (!owner) return this.probe(actor, 'api_key', id, client);
      patch.scopes = JSON.stringify(keyScopes(actor, owner.role, input.scopes));
    }
    if (input.rate_limit_per_hour !== undefined) patch.rate_limit_per_hour = input.rate_limit_per_hour;
    if (input.expires_at !== undefined)
      patch.expires_at = input.expires_at === null ? null : futureTime(input.expires_at, now);
    const budgetChange = input.budget !== undefined && this.deps.budgets ? input.budget : undefined;
    if (budgetChange) parseBudget(budgetChange);
    if (Object.keys(patch).length === 0 && budgetChange === undefined) {
      throw new GatewayError(
        'INVALID_FIELD',
        'nothing to change: give name, scopes, rate_limit_per_hour, expires_at or budget',
        { details: [{ field: '', message: 'must have at least one field' }] },
      );
    }
    const fields = [...Object.keys(patch), ...(budgetChange !== undefined ? ['budget'] : [])];
    let budget: BudgetStatus | null | undefined;
    await this.deps.database.transaction(async (trx) => {
      const live =
        Object.keys(patch).length > 0 ? await this.creds.with(trx).updateLiveApiKey(row.id, patch, now) : true;
      if (!live)
        throw new GatewayError('INVALID_STATE', 'this API key was revoked or expired meanwhile: it cannot be updated');
      if (budgetChange !== undefined) {
        const target = { subject: 'api_key' as const, id: row.id, tenantId: row.tenant_id };
        if (budgetChange === null) {
          await this.deps.budgets!.remove(actor, target, client, trx);
          budget = null;
        } else {
          budget = await this.deps.budgets!.set(actor, target, budgetChange, client, trx);
        }
      }
      await this.deps.audit.record(
        {
          action: 'key.update',
          outcome: 'success',
          actor: accountActor(actor, asAdmin),
          tenantId: row.tenant_id,
          target: { type: 'api_key', id: row.id },
          ...auditContext(client),
          details: {
            owner_id: row.user_id,
            fields,
            ...(patch.scopes !== undefined ? { scopes: JSON.parse(patch.scopes) as string[] } : {}),
          },
        },
        trx,
      );
    });
    if (budget === undefined && this.deps.budgets)
      budget = (await this.deps.budgets.ofKeys([row.id])).get(row.id) ?? null;
    return { row: { ...row, ...patch }, at: now, budget: budget ?? null };
  }

  /**
   * Gives a key a new secret under the same id (its name, scopes, limits, usage
   * and budgets go on); the new key is in this answer only. The secret it had
   * keeps working for `grace_seconds` (default 24 h, 0: stops at once); only
   * one previous secret is kept, so rolling again ends the older one at once.
   * Audited as `key.roll` (never a secret).
   */
  async rollApiKey(
    actor: Principal,
    id: string,
    input: RollKeyInput,
    asAdmin: boolean,
    client?: ClientInfo,
  ): Promise<RolledApiKey> {
    const grace = input.grace_seconds ?? DEFAULT_ROLL_GRACE_SECONDS;
    if (!Number.isInteger(grace) || grace < 0 || grace > MAX_ROLL_GRACE_SECONDS) {
      throw new GatewayError('INVALID_FIELD', `grace_seconds must be an integer from 0 to ${MAX_ROLL_GRACE_SECONDS}`, {
        details: [{ field: 'grace_seconds', message: `must be from 0 to ${MAX_ROLL_GRACE_SECONDS}` }],
      });
    }
    const row = await this.liveKey(actor, id, asAdmin, 'rolled', client);
    const now = this.deps.clock.now();
    const key = generateApiKey();
    const previousExpiresAt = now + grace * 1000;
    const next = {
      key_hash: hashSecret(key),
      key_prefix: key.slice(0, 12),
      previous_key_hash: grace > 0 ? row.key_hash : null,
      previous_key_prefix: grace > 0 ? row.key_prefix : null,
      previous_expires_at: grace > 0 ? previousExpiresAt : null,
    };
    await this.deps.database.transaction(async (trx) => {
      if (!(await this.creds.with(trx).rollApiKey(row.id, row.key_hash, next, now))) {
        throw new GatewayError(
          'INVALID_STATE',
          'this API key was revoked, expired or rolled meanwhile: read it again and retry',
        );
      }
      await this.deps.audit.record(
        {
          action: 'key.roll',
          outcome: 'success',
          actor: accountActor(actor, asAdmin),
          tenantId: row.tenant_id,
          target: { type: 'api_key', id: row.id },
          ...auditContext(client),
          details: {
            owner_id: row.user_id,
            grace_seconds: grace,
            previous_expires_at: iso(previousExpiresAt),
            prefix: next.key_prefix,
            previous_prefix: row.key_prefix,
          },
        },
        trx,
      );
    });
    return { row: { ...row, ...next, rolled_at: now }, at: now, key, previousExpiresAt };
  }

  /** `keen-admin init`: the first platform admin and its API key, refused once one exists. */
  async bootstrap(input: { email: string; password?: string }): Promise<IssuedApiKey & { user: UserRow }> {
    return this.deps.database.transaction(async (trx) => {
      if ((await this.users.with(trx).countPlatformAdmins()) > 0) {
        throw new GatewayError(
          'ALREADY_EXISTS',
          'a platform administrator already exists; use keen-admin users create',
        );
      }
      const user = await this.createUser(
        null,
        { email: input.email, password: input.password, role: 'admin', tier: 'enterprise' },
        undefined,
        trx,
      );
      const created = await this.createApiKey(null, user, { name: 'keen-admin (init)' }, undefined, trx);
      return { user, ...created };
    });
  }
}

/** `expires_at` of a key: a date-time in the future, 400 INVALID_FIELD otherwise. */
function futureTime(value: string, now: number): number {
  const t = Date.parse(value);
  if (!Number.isFinite(t) || t <= now) {
    throw new GatewayError('INVALID_FIELD', 'expires_at must be a date-time in the future', {
      details: [{ field: 'expires_at', message: 'must be in the future' }],
    });
  }
  return t;
}

/** Unique-constraint violations of both drivers. */
export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return (
    e?.code === '23505' ||
    e?.code === 'SQLITE_CONSTRAINT_UNIQUE' ||
    e?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY' ||
    /UNIQUE constraint failed/.test(e?.message ?? '')
  );
}
