import type { Principal } from '../auth/principal.js';
import { GatewayError } from '../errors.js';
import { assertScope, effectiveRole } from '../policies/index.js';

/**
 * How an administrator may move credits: a platform admin mints (grants to any
 * user, grants into any tenant's pool); a tenant admin only draws on its own
 * tenant's pool, for other members of its tenant.
 */
export type CreditAuthority = { kind: 'platform' } | { kind: 'tenant'; tenantId: string };

/**
 * The one place the credit routes tell a platform admin from a tenant admin
 * (the grant, the pool endpoints): the principal's role, and the credential
 * must carry the `admin` scope (an API key created without it is refused even
 * though its owner is an admin). Anyone else is refused.
 */
export function creditAuthorityOf(p: Principal): CreditAuthority {
  // The role comes from daemon/policies (`effectiveRole`: the credential's scopes meet the owner's role).
  assertScope(p, 'admin');
  const role = effectiveRole(p);
  if (role === 'platform_admin') return { kind: 'platform' };
  if (role === 'tenant_admin' && p.tenantId) return { kind: 'tenant', tenantId: p.tenantId };
  throw new GatewayError('FORBIDDEN', 'administrator role required');
}
