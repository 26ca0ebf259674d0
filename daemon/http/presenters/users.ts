import type { ApiKey, Tenant, User } from '../../../schemas/types.gen.js';
import { presentApiKey, presentTenant, presentUser } from '../../auth/presenters.js';
import { iso } from '../../clock.js';
import { presentBudgetStatus } from '../../credits/budget-present.js';
import type { ApiKeyView, IssuedApiKey, RolledApiKey, TenantPage, UserPage } from '../../users/user-admin.js';
import type { UserRow } from '../../storage/repos/users.js';

/**
 * The presenters of what UserAdminService returns (rows and views): users, tenants and API
 * keys as the API shows them, never a hash or a secret other than a key issued just now.
 */

/** An API key, with its budget where the service read one (create, list, update). */
export function presentKey(v: ApiKeyView): ApiKey {
  const key = presentApiKey(v.row, v.at);
  return v.budget === undefined ? key : { ...key, budget: v.budget ? presentBudgetStatus(v.budget) : null };
}

/** A key just created: `{api_key, key}`, the key in this answer only. */
export const presentIssuedKey = (v: IssuedApiKey): { api_key: ApiKey; key: string } => ({
  api_key: presentKey(v),
  key: v.key,
});

/** A key just rolled: its new secret and until when the previous one works. */
export const presentRolledKey = (v: RolledApiKey): { api_key: ApiKey; key: string; previous_expires_at: string } => ({
  api_key: presentKey(v),
  key: v.key,
  previous_expires_at: iso(v.previousExpiresAt),
});

export const presentUserPage = (p: UserPage): { users: User[]; next_cursor: string | null } => ({
  users: p.users.map(presentUser),
  next_cursor: p.nextCursor,
});

export const presentTenantPage = (p: TenantPage): { tenants: Tenant[]; next_cursor: string | null } => ({
  tenants: p.tenants.map(presentTenant),
  next_cursor: p.nextCursor,
});

/** `keen-admin init`: the first platform admin and its API key. */
type Bootstrapped = { user: User } & ReturnType<typeof presentIssuedKey>;
export const presentBootstrap = (r: IssuedApiKey & { user: UserRow }): Bootstrapped => ({
  user: presentUser(r.user),
  ...presentIssuedKey(r),
});
