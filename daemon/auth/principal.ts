/** Who is calling, as the authentication middleware established it. Handlers and services read it; nothing else. */

export const SCOPES = ['agents:execute', 'sessions:read', 'credits:read', 'keys:manage', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export const TIERS = ['individual', 'team', 'enterprise'] as const;
export type Tier = (typeof TIERS)[number];

/** member: own resources. tenant_admin: everything in its tenant. platform_admin: everything. */
export const ROLES = ['member', 'tenant_admin', 'platform_admin'] as const;
export type Role = (typeof ROLES)[number];

export interface Principal {
  userId: string;
  tenantId: string | null;
  email: string;
  role: Role;
  tier: Tier;
  /** Effective scopes: the user's, or the subset an API key was created with. */
  scopes: Scope[];
  via: 'jwt' | 'api_key';
  /** Set when authenticated with an API key. */
  apiKeyId: string | null;
  /** The key's own hourly limit (default 1000, docs/rate-limits.md), when authenticated with an API key. */
  apiKeyRateLimitPerHour: number | null;
  /**
   * The sign-in (refresh-token family, the access token's `sid`) a JWT belongs
   * to; null or absent for API keys and for access tokens issued before sign-in ids.
   */
  signInId?: string | null;
}

/** The scopes a user of this role holds; an API key may carry a subset. */
export function scopesForRole(role: Role): Scope[] {
  return role === 'member' ? ['agents:execute', 'sessions:read', 'credits:read', 'keys:manage'] : [...SCOPES];
}
