import type { Selectable } from 'kysely';
import type { Queryable } from '../database.js';
import type { AuthTables } from '../tables/auth.js';

export type RefreshTokenRow = Selectable<AuthTables['refresh_tokens']>;
export type ApiKeyRow = Selectable<AuthTables['api_keys']>;

/** Refresh tokens (by family) and API keys: credentials stored only as hashes. */
export class CredentialRepository {
  constructor(private readonly db: Queryable) {}

  with(trx: Queryable): CredentialRepository {
    return new CredentialRepository(trx);
  }

  async insertRefreshToken(row: RefreshTokenRow): Promise<void> {
    await this.db.insertInto('refresh_tokens').values(row).execute();
  }

  async findRefreshToken(tokenHash: string): Promise<RefreshTokenRow | undefined> {
    return this.db.selectFrom('refresh_tokens').selectAll().where('token_hash', '=', tokenHash).executeTakeFirst();
  }

  /** Compare-and-set active -> used; false when another request used it first. */
  async markRefreshTokenUsed(id: string, now: number): Promise<boolean> {
    const r = await this.db
      .updateTable('refresh_tokens')
      .set({ status: 'used', used_at: now })
      .where('id', '=', id)
      .where('status', '=', 'active')
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async revokeFamily(familyId: string): Promise<number> {
    const r = await this.db
      .updateTable('refresh_tokens')
      .set({ status: 'revoked' })
      .where('family_id', '=', familyId)
      .where('status', '!=', 'revoked')
      .executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  async revokeAllForUser(userId: string): Promise<number> {
    const r = await this.db
      .updateTable('refresh_tokens')
      .set({ status: 'revoked' })
      .where('user_id', '=', userId)
      .where('status', '!=', 'revoked')
      .executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  async insertApiKey(row: ApiKeyRow): Promise<void> {
    await this.db.insertInto('api_keys').values(row).execute();
  }

  async findApiKeyByHash(keyHash: string): Promise<ApiKeyRow | undefined> {
    return this.db.selectFrom('api_keys').selectAll().where('key_hash', '=', keyHash).executeTakeFirst();
  }

  async findApiKey(id: string, ownerId: string | null, tenantId: string | null | undefined): Promise<ApiKeyRow | undefined> {
    let q = this.db.selectFrom('api_keys').selectAll().where('id', '=', id);
    if (ownerId !== null) q = q.where('user_id', '=', ownerId);
    if (tenantId !== undefined) q = tenantId === null ? q.where('tenant_id', 'is', null) : q.where('tenant_id', '=', tenantId);
    return q.executeTakeFirst();
  }

  /** Keys of one user, or of a tenant (`tenantId`), or all (`undefined` and `userId` null). */
  async listApiKeys(filter: { userId: string | null; tenantId?: string | null }, limit: number): Promise<ApiKeyRow[]> {
    let q = this.db.selectFrom('api_keys').selectAll().orderBy('id', 'desc').limit(limit);
    if (filter.userId !== null) q = q.where('user_id', '=', filter.userId);
    if (filter.tenantId !== undefined) q = filter.tenantId === null ? q.where('tenant_id', 'is', null) : q.where('tenant_id', '=', filter.tenantId);
    return q.execute();
  }

  async revokeApiKey(id: string, now: number): Promise<boolean> {
    const r = await this.db
      .updateTable('api_keys')
      .set({ revoked_at: now })
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async touchApiKey(id: string, now: number): Promise<void> {
    await this.db.updateTable('api_keys').set({ last_used_at: now }).where('id', '=', id).execute();
  }
}
