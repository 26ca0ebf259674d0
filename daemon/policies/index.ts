/**
 * Who may do what: every authorization decision of the gateway, in one place
 * (docs/API.md, "Roles and credentials"). Routes declare the scope and the
 * policy they need (RouteSpec `scope`, `policy`), the guards and the stream
 * enforce them with the checks below, and services ask this module which rows
 * a principal may touch (`reachFor`) and whether a change is allowed
 * (`assertUserChange`, `keyScopes`, `assertCanGrant`).
 *
 * The one rule under all of them: a credential acts with the INTERSECTION of
 * its scopes and its owner's role. An administrator's API key without the
 * `admin` scope is a member's key: it sees its owner's rows only.
 */
import { SCOPES, TIERS, scopesForRole, type Principal, type Role, type Scope, type Tier } from '../auth/principal.js';
import { GatewayError, notFound } from '../errors.js';

// -- reach: which rows a request may touch ---------------------------------------

/**
 * Which rows a request may read or change, applied in SQL by every repository
 * read that takes it: every row (a platform admin), the rows of one tenant (a
 * tenant admin), or the rows of one user. There is no "null means everything":
 * everything is `{ all: true }`, spelled out.
 */
export type Reach = { readonly all: true } | { readonly tenantId: string } | { readonly userId: string };

/** Every row. */
export const EVERYTHING: Reach = Object.freeze({ all: true as const });

/** The rows of one user. */
export const ofUser = (userId: string): Reach => ({ userId });

/**
 * A reach as a SQL restriction: which column must equal what, or null for every
 * row. A malformed reach (no tenant id, `{ tenantId: null }` from untyped code)
 * throws instead of widening to every row.
 */
export function reachFilter(reach: Reach): { column: 'tenant_id' | 'user_id'; value: string } | null {
  const r = reach as { all?: unknown; tenantId?: unknown; userId?: unknown };
  const keys = Object.keys(r).filter((k) => r[k as keyof typeof r] !== undefined);
  if (keys.length === 1 && r.all === true) return null;
  if (keys.length === 1 && typeof r.tenantId === 'string' && r.tenantId !== '')
    return { column: 'tenant_id', value: r.tenantId };
  if (keys.length === 1 && typeof r.userId === 'string' && r.userId !== '')
    return { column: 'user_id', value: r.userId };
  throw new Error(`malformed reach: ${JSON.stringify(reach)}`);
}

/** Whether a row already in memory is within reach (the same predicate as the SQL). */
export function inReach(reach: Reach, row: { tenantId: string | null; userId: string | null }): boolean {
  const f = reachFilter(reach);
  if (!f) return true;
  return f.column === 'tenant_id' ? row.tenantId === f.value : row.userId === f.value;
}

// -- roles ------------------------------------------------------------------------

/**
 * The role a credential acts with: its owner's role when it carries the `admin`
 * scope (every administrator's access token does), otherwise `member`. A tenant
 * admin without a tenant administers nothing.
 */
export function effectiveRole(p: Pick<Principal, 'role' | 'scopes' | 'tenantId'>): Role {
  if (p.role === 'member' || !p.scopes.includes('admin')) return 'member';
  if (p.role === 'tenant_admin' && !p.tenantId) return 'member';
  return p.role;
}

/**
 * Which rows `p` may touch on a route:
 * - `self`: its own, whoever it is (its API keys, its balance).
 * - `user`: the routes every user has (`/v1/sessions`): its own; a tenant
 *   admin acting as one (JWT, or a key with `admin`) its tenant's.
 * - `admin`: the `/v1/admin` routes: a platform admin everything, a tenant admin
 *   its tenant; anyone else is FORBIDDEN.
 */
export function reachFor(p: Principal, view: 'self' | 'user' | 'admin'): Reach {
  if (view === 'self') return ofUser(p.userId);
  const role = effectiveRole(p);
  if (role === 'tenant_admin') return { tenantId: p.tenantId! };
  if (view === 'user') return ofUser(p.userId);
  if (role === 'platform_admin') return EVERYTHING;
  throw new GatewayError('FORBIDDEN', 'administrator role required');
}

// -- route guards -----------------------------------------------------------------

/**
 * What a route needs beyond its scope: `administrator` (a tenant or platform
 * admin, acting as one) or `platform_admin`.
 */
export type RoutePolicy = 'administrator' | 'platform_admin';

/** 403 INSUFFICIENT_SCOPE unless the credential carries `scope`. */
export function assertScope(p: Principal, scope: Scope): void {
  if (!(p.scopes as readonly string[]).includes(scope)) {
    throw new GatewayError('INSUFFICIENT_SCOPE', `this credential lacks the scope ${scope}`, {
      details: { required: scope },
    });
  }
}

/** 403 FORBIDDEN unless the principal's effective role meets the route's policy. */
export function assertRoutePolicy(p: Principal, policy: RoutePolicy): void {
  if (policy === 'platform_admin') return assertPlatformAdmin(p);
  if (effectiveRole(p) === 'member') throw new GatewayError('FORBIDDEN', 'administrator role required');
}

/** 403 FORBIDDEN unless `p` acts as a platform admin (`what`: the action, for the message). */
export function assertPlatformAdmin(p: Principal, what = 'do this'): void {
  if (effectiveRole(p) !== 'platform_admin')
    throw new GatewayError('FORBIDDEN', `only platform administrators ${what}`);
}

// -- API keys ---------------------------------------------------------------------

/**
 * The scopes `actor` may put on a key it creates: an API key its own scopes, an
 * access token its role's. `null` is the system itself (`keen-admin init`).
 */
export function mintableScopes(actor: Principal | null): Scope[] {
  if (actor === null) return [...SCOPES];
  return actor.via === 'api_key' ? SCOPES.filter((s) => actor.scopes.includes(s)) : scopesForRole(actor.role);
}

/**
 * The scopes of a new key of an owner with `ownerRole`, as `actor` asks for
 * them: each must be held by the owner's role (403 INSUFFICIENT_SCOPE) and
 * mintable by the actor (403 INSUFFICIENT_SCOPE). Without `requested`: every
 * scope both hold. 400 INVALID_FIELD for an unknown scope.
 */
export function keyScopes(actor: Principal | null, ownerRole: Role, requested?: readonly string[]): Scope[] {
  const owner = new Set<string>(scopesForRole(ownerRole));
  const mintable = new Set<string>(mintableScopes(actor));
  if (requested === undefined) {
    const both = SCOPES.filter((s) => owner.has(s) && mintable.has(s));
    if (both.length === 0)
      throw new GatewayError(
        'INSUFFICIENT_SCOPE',
        "this credential can grant none of the scopes the key's owner holds; name the scopes",
      );
    return both;
  }
  const scopes = [...new Set(requested)];
  const unknown = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
  if (unknown.length > 0)
    throw new GatewayError('INVALID_FIELD', `unknown scope: ${unknown.join(', ')}`, {
      details: [{ field: 'scopes', message: 'unknown scope' }],
    });
  const beyondOwner = scopes.filter((s) => !owner.has(s));
  if (beyondOwner.length > 0)
    throw new GatewayError('INSUFFICIENT_SCOPE', `the key's owner does not hold: ${beyondOwner.join(', ')}`);
  const beyondActor = scopes.filter((s) => !mintable.has(s));
  if (beyondActor.length > 0) {
    throw new GatewayError(
      'INSUFFICIENT_SCOPE',
      `this credential cannot grant scopes it does not hold: ${beyondActor.join(', ')}`,
      { details: { required: beyondActor } },
    );
  }
  return scopes as Scope[];
}

// -- users ------------------------------------------------------------------------

/** Who suspended a user: a lift needs at least that role. */
export type SuspendedBy = 'tenant_admin' | 'platform_admin';

export type UserChange =
  | { kind: 'create'; role: Role; tier: Tier }
  | { kind: 'suspend' }
  | { kind: 'activate' }
  | { kind: 'set_tier'; tier: Tier }
  | { kind: 'reset_mfa' };

/** What a decision about a user needs to know of it. */
export interface UserTarget {
  id: string;
  tenant_id: string | null;
  role: Role;
  status: 'active' | 'suspended';
  suspended_by_role: SuspendedBy | null;
}

const tierRank = (t: Tier): number => TIERS.indexOf(t);

/**
 * Whether `actor` may make `change` to `target` (for `create`, the user about
 * to be made in the actor's reach: pass null). Throws 403 FORBIDDEN, or 404 for
 * a target outside the actor's reach (as if it did not exist). Platform admins
 * may do everything. Tenant admins manage their tenant's users, except:
 * - they cannot lift a suspension a platform admin made;
 * - tiers: they set a member's tier (and create users) up to their own tier,
 *   never their own tier nor another administrator's;
 * - roles: they create members and tenant admins of their tenant only.
 */
export function assertUserChange(actor: Principal, target: UserTarget | null, change: UserChange): void {
  const reach = reachFor(actor, 'admin');
  if (target && !inReach(reach, { tenantId: target.tenant_id, userId: target.id })) throw notFound('user');
  if (effectiveRole(actor) === 'platform_admin') return;
  const capTier = (tier: Tier) => {
    if (tierRank(tier) > tierRank(actor.tier)) {
      throw new GatewayError(
        'FORBIDDEN',
        `a tenant administrator gives tiers up to its own (${actor.tier}); ${tier} is for platform administrators to give`,
      );
    }
  };
  switch (change.kind) {
    case 'create':
      if (change.role === 'platform_admin')
        throw new GatewayError('FORBIDDEN', 'only platform administrators create platform administrators');
      return capTier(change.tier);
    case 'set_tier':
      if (target!.id === actor.userId) throw new GatewayError('FORBIDDEN', 'you cannot change your own tier');
      if (target!.role !== 'member')
        throw new GatewayError('FORBIDDEN', "only platform administrators change an administrator's tier");
      return capTier(change.tier);
    case 'activate':
      if (target!.status === 'suspended' && target!.suspended_by_role !== 'tenant_admin') {
        throw new GatewayError(
          'FORBIDDEN',
          'this user was suspended by a platform administrator; only a platform administrator can reactivate it',
        );
      }
      return;
    case 'suspend':
    case 'reset_mfa':
      return;
  }
}

/**
 * Who a suspension by `actor` is recorded as: its role, or the platform when
 * the platform had suspended the user already (a tenant admin suspending again
 * must not make a platform suspension liftable by the tenant).
 */
export function suspendedBy(actor: Principal, target: Pick<UserTarget, 'status' | 'suspended_by_role'>): SuspendedBy {
  if (effectiveRole(actor) === 'platform_admin') return 'platform_admin';
  return target.status === 'suspended' && target.suspended_by_role !== 'tenant_admin'
    ? 'platform_admin'
    : 'tenant_admin';
}

// -- credits ----------------------------------------------------------------------

/**
 * Whether `actor` may grant credits to `recipient` (found in its reach). A
 * tenant admin never grants to itself; where a tenant admin's grant comes from
 * (the tenant's credit pool) is the ledger's business.
 */
export function assertCanGrant(actor: Principal, recipient: { id: string; tenant_id: string | null }): void {
  const reach = reachFor(actor, 'admin');
  if (!inReach(reach, { tenantId: recipient.tenant_id, userId: recipient.id })) throw notFound('user');
  if (effectiveRole(actor) !== 'platform_admin' && recipient.id === actor.userId) {
    throw new GatewayError('FORBIDDEN', 'a tenant administrator cannot grant credits to itself');
  }
}
