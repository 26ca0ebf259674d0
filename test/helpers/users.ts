import { newId } from '../../daemon/ids.js';
import type { Database } from '../../daemon/storage/database.js';
import { UserRepository, type UserRow } from '../../daemon/storage/repos/users.js';

/**
 * Inserts a complete `users` row straight into the store (no service, no audit,
 * no password hashing) and returns it: for tests and benches that only need a
 * user to exist, e.g. because the credit tables reference users. The defaults
 * are an active individual member without a tenant, password or MFA; a new
 * users column gets its default here, once.
 */
export async function insertTestUser(database: Database, overrides: Partial<UserRow> = {}): Promise<UserRow> {
  const now = Date.now();
  const id = overrides.id ?? newId('usr', now);
  const row: UserRow = {
    id,
    tenant_id: null,
    email: `user-${id}@example.test`,
    password_hash: null,
    status: 'active',
    suspended_by_role: null,
    tier: 'individual',
    role: 'member',
    mfa_enabled: 0,
    mfa_secret_enc: null,
    mfa_last_step: null,
    tokens_not_before: 0,
    created_at: now,
    updated_at: now,
    last_login_at: null,
    ...overrides,
  };
  await new UserRepository(database.db).insert(row);
  return row;
}
