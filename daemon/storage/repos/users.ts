import type { Selectable } from 'kysely';
import type { Queryable } from '../database.js';
import type { AuthTables } from '../tables/auth.js';

export type UserRow = Selectable<AuthTables['users']>;
export type TenantRow = Selectable<AuthTables['tenants']>;

/** Which tenant a query may see: `null` = every tenant (platform admin). */
export type TenantScope = { tenantId: string | null } | null;

/** Users and tenants. Every read that an admin of a tenant can make takes the tenant scope, applied in SQL. */
export class UserRepository {
  constructor(private readonly db: Queryable) {}

  with(trx: Queryable): UserRepository {
    return new UserRepository(trx);
  }

  async insert(row: UserRow): Promise<void> {
    await this.db.insertInto('users').values(row).execute();
  }

  async findById(id: string, scope: TenantScope = null): Promise<UserRow | undefined> {
    let q = this.db.selectFrom('users').selectAll().where('id', '=', id);
    if (scope) q = scope.tenantId === null ? q.where('tenant_id', 'is', null) : q.where('tenant_id', '=', scope.tenantId);
    return q.executeTakeFirst();
  }

  async findByEmail(email: string, scope: TenantScope = null): Promise<UserRow | undefined> {
    let q = this.db.selectFrom('users').selectAll().where('email', '=', email);
    if (scope) q = scope.tenantId === null ? q.where('tenant_id', 'is', null) : q.where('tenant_id', '=', scope.tenantId);
    return q.executeTakeFirst();
  }

  async list(scope: TenantScope, options: { limit: number; after?: string | null }): Promise<UserRow[]> {
    let q = this.db.selectFrom('users').selectAll().orderBy('id', 'asc').limit(options.limit);
    if (scope) q = scope.tenantId === null ? q.where('tenant_id', 'is', null) : q.where('tenant_id', '=', scope.tenantId);
    if (options.after) q = q.where('id', '>', options.after);
    return q.execute();
  }

  async update(id: string, patch: Partial<Omit<UserRow, 'id'>>): Promise<number> {
    const r = await this.db.updateTable('users').set(patch).where('id', '=', id).executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  /** Every user with an MFA secret, sealed as stored. */
  async listSealedMfaSecrets(): Promise<Array<{ id: string; mfa_secret_enc: string }>> {
    const rows = await this.db.selectFrom('users').select(['id', 'mfa_secret_enc']).where('mfa_secret_enc', 'is not', null).execute();
    return rows as Array<{ id: string; mfa_secret_enc: string }>;
  }

  /** Replaces a user's sealed MFA secret only if it is still `from` (an enrolment in between wins). True when replaced. */
  async replaceSealedMfaSecret(id: string, from: string, to: string): Promise<boolean> {
    const r = await this.db.updateTable('users').set({ mfa_secret_enc: to }).where('id', '=', id).where('mfa_secret_enc', '=', from).executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** Accepts a TOTP time step only if it is newer than the last accepted one: a code is never accepted twice. */
  async advanceMfaStep(id: string, step: number): Promise<boolean> {
    const r = await this.db
      .updateTable('users')
      .set({ mfa_last_step: step })
      .where('id', '=', id)
      .where((eb) => eb.or([eb('mfa_last_step', 'is', null), eb('mfa_last_step', '<', step)]))
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async countPlatformAdmins(): Promise<number> {
    const r = await this.db
      .selectFrom('users')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('role', '=', 'platform_admin')
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }

  // Recovery codes (part of the user aggregate).
  async replaceRecoveryCodes(userId: string, rows: Array<{ id: string; code_hash: string; created_at: number }>): Promise<void> {
    await this.db.deleteFrom('recovery_codes').where('user_id', '=', userId).execute();
    if (rows.length > 0) {
      await this.db
        .insertInto('recovery_codes')
        .values(rows.map((r) => ({ ...r, user_id: userId, used_at: null })))
        .execute();
    }
  }

  /** Marks an unused recovery code used; false when it does not exist or was used already. */
  async useRecoveryCode(userId: string, codeHash: string, now: number): Promise<boolean> {
    const r = await this.db
      .updateTable('recovery_codes')
      .set({ used_at: now })
      .where('user_id', '=', userId)
      .where('code_hash', '=', codeHash)
      .where('used_at', 'is', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  // Tenants.
  async insertTenant(row: TenantRow): Promise<void> {
    await this.db.insertInto('tenants').values(row).execute();
  }

  async findTenant(id: string): Promise<TenantRow | undefined> {
    return this.db.selectFrom('tenants').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async findTenantByName(name: string): Promise<TenantRow | undefined> {
    return this.db.selectFrom('tenants').selectAll().where('name', '=', name).executeTakeFirst();
  }

  async listTenants(onlyId: string | null, options: { limit: number; after?: string | null }): Promise<TenantRow[]> {
    let q = this.db.selectFrom('tenants').selectAll().orderBy('id', 'asc').limit(options.limit);
    if (onlyId !== null) q = q.where('id', '=', onlyId);
    if (options.after) q = q.where('id', '>', options.after);
    return q.execute();
  }
}
