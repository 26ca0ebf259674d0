import type { Selectable } from 'kysely';
import { EVERYTHING, reachFilter, type Reach } from '../../policies/index.js';
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

  /**
   * Postgres, inside a transaction: takes the row lock of the tokens' owner,
   * so a rotation and a revocation of the user's sign-ins (which update the
   * user row first) do not interleave. Not for SQLite, whose writers are serial.
   */
  async lockOwner(userId: string): Promise<void> {
    await this.db.selectFrom('users').select('id').where('id', '=', userId).forUpdate().execute();
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

  /** Whether the sign-in (refresh-token family) `familyId` of `userId` still stands: some token of it is not revoked. */
  async isSignInLive(userId: string, familyId: string): Promise<boolean> {
    const row = await this.db
      .selectFrom('refresh_tokens')
      .select('id')
      .where('family_id', '=', familyId)
      .where('user_id', '=', userId)
      .where('status', '!=', 'revoked')
      .limit(1)
      .executeTakeFirst();
    return row !== undefined;
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

  /**
   * Revokes every refresh token of `userId` outside the family `keepFamilyId`
   * (all of them when null). Returns how many sign-ins were still usable
   * (held an active, unexpired token) and are now ended.
   */
  async revokeOtherFamilies(userId: string, keepFamilyId: string | null, now: number): Promise<number> {
    let live = this.db
      .selectFrom('refresh_tokens')
      .select('family_id')
      .distinct()
      .where('user_id', '=', userId)
      .where('status', '=', 'active')
      .where('expires_at', '>', now);
    let revoke = this.db
      .updateTable('refresh_tokens')
      .set({ status: 'revoked' })
      .where('user_id', '=', userId)
      .where('status', '!=', 'revoked');
    if (keepFamilyId !== null) {
      live = live.where('family_id', '!=', keepFamilyId);
      revoke = revoke.where('family_id', '!=', keepFamilyId);
    }
    const ended = (await live.execute()).length;
    await revoke.execute();
    return ended;
  }

  /** The keys of `userId` that still authenticate: not revoked, not expired. Oldest first. */
  async listLiveApiKeys(userId: string, now: number): Promise<ApiKeyRow[]> {
    return this.db
      .selectFrom('api_keys')
      .selectAll()
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
      .orderBy('id', 'asc')
      .execute();
  }

  /** Revokes these keys of `userId` that are not revoked yet; returns the ids it revoked. */
  async revokeApiKeysOf(userId: string, ids: string[], now: number): Promise<string[]> {
    if (ids.length === 0) return [];
    const rows = await this.db
      .updateTable('api_keys')
      .set({ revoked_at: now })
      .where('user_id', '=', userId)
      .where('id', 'in', ids)
      .where('revoked_at', 'is', null)
      .returning('id')
      .execute();
    return rows.map((r) => r.id);
  }

  async insertApiKey(row: ApiKeyRow): Promise<void> {
    await this.db.insertInto('api_keys').values(row).execute();
  }

  /** A key by id, within `reach` (its owner's rows, a tenant's, or every key). */
  async findApiKey(id: string, reach: Reach = EVERYTHING): Promise<ApiKeyRow | undefined> {
    let q = this.db.selectFrom('api_keys').selectAll().where('id', '=', id);
    const f = reachFilter(reach);
    if (f) q = q.where(f.column, '=', f.value);
    return q.executeTakeFirst();
  }

  /** Keys within `reach`: of one user, of a tenant, or every key. */
  async listApiKeys(reach: Reach, limit: number): Promise<ApiKeyRow[]> {
    let q = this.db.selectFrom('api_keys').selectAll().orderBy('id', 'desc').limit(limit);
    const f = reachFilter(reach);
    if (f) q = q.where(f.column, '=', f.value);
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

  /**
   * Changes a key that is still live (not revoked, not expired at `now`):
   * false when it is not (revoked or expired meanwhile).
   */
  async updateLiveApiKey(
    id: string,
    patch: Partial<Pick<ApiKeyRow, 'name' | 'scopes' | 'rate_limit_per_hour' | 'expires_at'>>,
    now: number,
  ): Promise<boolean> {
    const r = await this.db
      .updateTable('api_keys')
      // A new expiry is announced again (`api_key.expiring`) when its time comes.
      .set(patch.expires_at !== undefined ? { ...patch, expiry_notified_at: null } : patch)
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /**
   * Gives a live key a new secret (compare-and-set on the secret it had,
   * `fromHash`): the old one becomes the previous secret (accepted until
   * `previousExpiresAt`), or is dropped when `previousExpiresAt` is null; any
   * older previous secret is dropped. False when the key was revoked, expired
   * or rolled by someone else meanwhile.
   */
  async rollApiKey(
    id: string,
    fromHash: string,
    next: {
      key_hash: string;
      key_prefix: string;
      previous_key_hash: string | null;
      previous_key_prefix: string | null;
      previous_expires_at: number | null;
    },
    now: number,
  ): Promise<boolean> {
    const r = await this.db
      .updateTable('api_keys')
      .set({ ...next, rolled_at: now })
      .where('id', '=', id)
      .where('key_hash', '=', fromHash)
      .where('revoked_at', 'is', null)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** The owner of an API key, revoked or not; undefined when there is no such key. */
  async apiKeyOwner(id: string): Promise<string | undefined> {
    const key = await this.db.selectFrom('api_keys').select('user_id').where('id', '=', id).executeTakeFirst();
    return key?.user_id;
  }

  async touchApiKey(id: string, now: number): Promise<void> {
    await this.db.updateTable('api_keys').set({ last_used_at: now }).where('id', '=', id).execute();
  }
}
