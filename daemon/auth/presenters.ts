import type { ApiKey, Tenant, User } from '../../schemas/types.gen.js';
import { iso } from '../clock.js';
import type { ApiKeyRow } from '../storage/repos/credentials.js';
import type { TenantRow, UserRow } from '../storage/repos/users.js';

/** A user as the API shows it: never a hash, a secret or an internal counter. */
export function presentUser(u: UserRow): User {
  return {
    id: u.id,
    email: u.email,
    tenant_id: u.tenant_id,
    status: u.status,
    tier: u.tier,
    role: u.role,
    mfa_enabled: u.mfa_enabled === 1,
    created_at: iso(u.created_at),
    updated_at: iso(u.updated_at),
    last_login_at: u.last_login_at === null ? null : iso(u.last_login_at),
  };
}

/** An API key as lists show it: the prefix to recognise it, never the key. */
export function presentApiKey(k: ApiKeyRow, now: number): ApiKey {
  return {
    id: k.id,
    user_id: k.user_id,
    name: k.name,
    prefix: k.key_prefix,
    scopes: JSON.parse(k.scopes) as ApiKey['scopes'],
    rate_limit_per_hour: k.rate_limit_per_hour,
    status: k.revoked_at !== null ? 'revoked' : k.expires_at !== null && k.expires_at <= now ? 'expired' : 'active',
    expires_at: k.expires_at === null ? null : iso(k.expires_at),
    last_used_at: k.last_used_at === null ? null : iso(k.last_used_at),
    revoked_at: k.revoked_at === null ? null : iso(k.revoked_at),
    created_at: iso(k.created_at),
    rolled_at: k.rolled_at === null ? null : iso(k.rolled_at),
    /** Until when the secret the key had before its last roll still works; null when it does not. */
    previous_expires_at:
      k.previous_expires_at !== null && k.previous_expires_at > now && k.revoked_at === null
        ? iso(k.previous_expires_at)
        : null,
  };
}

export function presentTenant(t: TenantRow): Tenant {
  return { id: t.id, name: t.name, created_at: iso(t.created_at) };
}
