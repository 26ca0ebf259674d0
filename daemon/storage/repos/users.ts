import type { Selectable, SelectQueryBuilder } from 'kysely';
import { EVERYTHING, reachFilter, type Reach } from '../../policies/index.js';
import type { Queryable } from '../database.js';
import type { DB } from '../schema.js';
import type { AuthTables } from '../tables/auth.js';

export type UserRow = Selectable<AuthTables['users']>;
export type TenantRow = Selectable<AuthTables['tenants']>;

/** A users query restricted to a reach (a user reach is that user's row). */
function within<O>(q: SelectQueryBuilder<DB, 'users', O>, reach: Reach): SelectQueryBuilder<DB, 'users', O> {
  const f = reachFilter(reach);
  if (!f) return q;
  return f.column === 'tenant_id' ? q.where('tenant_id', '=', f.value) : q.where('id', '=', f.value);
}

/** Users and tenants. Every read that an admin of a tenant can make takes the caller's reach (daemon/policies), applied in SQL. */
export class UserRepository {
  constructor(private readonly db: Queryable) {}

  with(trx: Queryable): UserRepository {
    return new UserRepository(trx);
  }

  async insert(row: UserRow): Promise<void> {
    await this.db.insertInto('users').values(row).execute();
  }

  async findById(id: string, reach: Reach = EVERYTHING): Promise<UserRow | undefined> {
    return within(this.db.selectFrom('users').selectAll().where('id', '=', id), reach).executeTakeFirst();
  }

  async findByEmail(email: string, reach: Reach = EVERYTHING): Promise<UserRow | undefined> {
    return within(this.db.selectFrom('users').selectAll().where('email', '=', email), reach).executeTakeFirst();
  }

  async list(reach: Reach, options: { limit: number; after?: string | null }): Promise<UserRow[]> {
    let q = within(this.db.selectFrom('users').selectAll().orderBy('id', 'asc').limit(options.limit), reach);
    if (options.after) q = q.where('id', '>', options.after);
    return q.execute();
  }

  async update(id: string, patch: Partial<Omit<UserRow, 'id'>>): Promise<number> {
    const r = await this.db.updateTable('users').set(patch).where('id', '=', id).executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  /** Every user with an MFA secret, sealed as stored. */
  async listSealedMfaSecrets(): Promise<Array<{ id: string; mfa_secret_enc: string }>> {
    const rows = await this.db
      .selectFrom('users')
      .select(['id', 'mfa_secret_enc'])
      .where('mfa_secret_enc', 'is not', null)
      .execute();
    return rows as Array<{ id: string; mfa_secret_enc: string }>;
  }

  /** Replaces a user's sealed MFA secret only if it is still `from` (an enrolment in between wins). True when replaced. */
  async replaceSealedMfaSecret(id: string, from: string, to: string): Promise<boolean> {
    const r = await this.db
      .updateTable('users')
      .set({ mfa_secret_enc: to })
      .where('id', '=', id)
      .where('mfa_secret_enc', '=', from)
      .executeTakeFirst();
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

  /** Ids of the tenant's administrators (`tenant_admin`), whatever their status. */
  async tenantAdminIds(tenantId: string): Promise<string[]> {
    const admins = await this.db
      .selectFrom('users')
      .select('id')
      .where('tenant_id', '=', tenantId)
      .where('role', '=', 'tenant_admin')
      .execute();
    return admins.map((a) => a.id);
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
  async replaceRecoveryCodes(
    userId: string,
    rows: Array<{ id: string; code_hash: string; created_at: number }>,
  ): Promise<void> {
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

  /** Tenants within reach: every tenant, one tenant, or the tenant of one user. */
  async listTenants(reach: Reach, options: { limit: number; after?: string | null }): Promise<TenantRow[]> {
    let q = this.db.selectFrom('tenants').selectAll().orderBy('id', 'asc').limit(options.limit);
    const f = reachFilter(reach);
    if (f?.column === 'tenant_id') q = q.where('id', '=', f.value);
    else if (f) q = q.where('id', 'in', this.db.selectFrom('users').select('tenant_id').where('id', '=', f.value));
    if (options.after) q = q.where('id', '>', options.after);
    return q.execute();
  }
}
