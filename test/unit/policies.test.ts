import { expect } from 'chai';
import { SCOPES, type Principal, type Scope } from '../../daemon/auth/principal.js';
import { GatewayError } from '../../daemon/errors.js';
import {
  EVERYTHING,
  assertCanGrant,
  assertPlatformAdmin,
  assertRoutePolicy,
  assertScope,
  assertUserChange,
  effectiveRole,
  inReach,
  keyScopes,
  mintableScopes,
  reachFilter,
  reachFor,
  suspendedBy,
  type UserTarget,
} from '../../daemon/policies/index.js';

const MEMBER: Scope[] = ['agents:execute', 'sessions:read', 'credits:read', 'keys:manage'];
const ALL: Scope[] = [...SCOPES];

function who(role: Principal['role'], overrides: Partial<Principal> = {}): Principal {
  return {
    userId: `usr_${role}`,
    tenantId: role === 'platform_admin' ? null : 'ten_a',
    email: `${role}@example.test`,
    role,
    tier: 'team',
    scopes: role === 'member' ? MEMBER : ALL,
    via: 'jwt',
    apiKeyId: null,
    apiKeyRateLimitPerHour: null,
    ...overrides,
  };
}
const key = (role: Principal['role'], scopes: Scope[], overrides: Partial<Principal> = {}) =>
  who(role, { via: 'api_key', apiKeyId: 'key_1', scopes, ...overrides });

const member = who('member');
const tenantAdmin = who('tenant_admin');
const platform = who('platform_admin');

function code(f: () => unknown): string | null {
  try {
    f();
    return null;
  } catch (err) {
    return err instanceof GatewayError ? err.code : `not a GatewayError: ${(err as Error).message}`;
  }
}

const user = (overrides: Partial<UserTarget> = {}): UserTarget => ({
  id: 'usr_m',
  tenant_id: 'ten_a',
  role: 'member',
  status: 'active',
  suspended_by_role: null,
  ...overrides,
});

describe('policies: reach', () => {
  it('spells every row out, and refuses a malformed reach instead of widening it', () => {
    expect(reachFilter(EVERYTHING)).to.equal(null);
    expect(reachFilter({ tenantId: 'ten_a' })).to.deep.equal({ column: 'tenant_id', value: 'ten_a' });
    expect(reachFilter({ userId: 'usr_1' })).to.deep.equal({ column: 'user_id', value: 'usr_1' });
    for (const bad of [
      null,
      undefined,
      {},
      { tenantId: null },
      { tenantId: '' },
      { userId: '' },
      { all: false },
      { all: 'yes' },
      { tenantId: 'ten_a', userId: 'usr_1' },
    ]) {
      expect(() => reachFilter(bad as never), JSON.stringify(bad)).to.throw();
    }
  });

  it('inReach is the same predicate in memory', () => {
    expect(inReach(EVERYTHING, { tenantId: null, userId: 'usr_1' })).to.equal(true);
    expect(inReach({ tenantId: 'ten_a' }, { tenantId: 'ten_a', userId: 'usr_1' })).to.equal(true);
    expect(inReach({ tenantId: 'ten_a' }, { tenantId: null, userId: 'usr_1' })).to.equal(false);
    expect(inReach({ userId: 'usr_1' }, { tenantId: 'ten_a', userId: 'usr_2' })).to.equal(false);
  });

  it('reachFor: self is always the own rows; user routes widen tenant admins acting as such; admin routes need an admin', () => {
    expect(reachFor(tenantAdmin, 'self')).to.deep.equal({ userId: 'usr_tenant_admin' });
    expect(reachFor(platform, 'self')).to.deep.equal({ userId: 'usr_platform_admin' });
    expect(reachFor(member, 'user')).to.deep.equal({ userId: 'usr_member' });
    expect(reachFor(tenantAdmin, 'user')).to.deep.equal({ tenantId: 'ten_a' });
    expect(reachFor(platform, 'user')).to.deep.equal({ userId: 'usr_platform_admin' });
    expect(reachFor(tenantAdmin, 'admin')).to.deep.equal({ tenantId: 'ten_a' });
    expect(reachFor(platform, 'admin')).to.deep.equal(EVERYTHING);
    expect(code(() => reachFor(member, 'admin'))).to.equal('FORBIDDEN');
  });

  it("an administrator's key without `admin` reaches what a member's key does", () => {
    const taKey = key('tenant_admin', MEMBER);
    expect(reachFor(taKey, 'user')).to.deep.equal({ userId: 'usr_tenant_admin' });
    expect(code(() => reachFor(taKey, 'admin'))).to.equal('FORBIDDEN');
    const paKey = key('platform_admin', MEMBER);
    expect(code(() => reachFor(paKey, 'admin'))).to.equal('FORBIDDEN');
    expect(reachFor(key('tenant_admin', ['admin']), 'user')).to.deep.equal({ tenantId: 'ten_a' });
  });
});

describe('policies: roles and route guards', () => {
  it('effectiveRole is the intersection of the credential and the role', () => {
    expect(effectiveRole(member)).to.equal('member');
    expect(effectiveRole(tenantAdmin)).to.equal('tenant_admin');
    expect(effectiveRole(platform)).to.equal('platform_admin');
    expect(effectiveRole(key('tenant_admin', MEMBER))).to.equal('member');
    expect(effectiveRole(key('platform_admin', ['sessions:read']))).to.equal('member');
    expect(effectiveRole(key('platform_admin', ['admin']))).to.equal('platform_admin');
    // A member never acts as an admin, whatever a credential claims; a tenant admin without a tenant administers nothing.
    expect(effectiveRole(who('member', { scopes: ALL }))).to.equal('member');
    expect(effectiveRole(who('tenant_admin', { tenantId: null }))).to.equal('member');
  });

  it('assertScope, assertRoutePolicy and assertPlatformAdmin answer INSUFFICIENT_SCOPE and FORBIDDEN', () => {
    expect(code(() => assertScope(member, 'admin'))).to.equal('INSUFFICIENT_SCOPE');
    expect(code(() => assertScope(member, 'sessions:read'))).to.equal(null);
    expect(code(() => assertRoutePolicy(member, 'administrator'))).to.equal('FORBIDDEN');
    expect(code(() => assertRoutePolicy(tenantAdmin, 'administrator'))).to.equal(null);
    expect(code(() => assertRoutePolicy(tenantAdmin, 'platform_admin'))).to.equal('FORBIDDEN');
    expect(code(() => assertRoutePolicy(platform, 'platform_admin'))).to.equal(null);
    expect(code(() => assertRoutePolicy(key('platform_admin', MEMBER), 'platform_admin'))).to.equal('FORBIDDEN');
    expect(code(() => assertPlatformAdmin(tenantAdmin, 'create tenants'))).to.equal('FORBIDDEN');
  });
});

describe('policies: API keys', () => {
  it('mintableScopes: a key its own scopes, a JWT its role, the system everything', () => {
    expect(mintableScopes(key('tenant_admin', ['admin']))).to.deep.equal(['admin']);
    expect(mintableScopes(member)).to.deep.equal(MEMBER);
    expect(mintableScopes(tenantAdmin)).to.deep.equal(ALL);
    expect(mintableScopes(null)).to.deep.equal(ALL);
    // A JWT carrying more than its role (a demoted user's token) mints only what the role holds.
    expect(mintableScopes(who('member', { scopes: ALL }))).to.deep.equal(MEMBER);
  });

  it('keyScopes: a subset of both the owner and the creating credential', () => {
    const adminOnly = key('tenant_admin', ['admin']);
    expect(code(() => keyScopes(adminOnly, 'tenant_admin', ALL))).to.equal('INSUFFICIENT_SCOPE');
    expect(code(() => keyScopes(adminOnly, 'member', ['agents:execute']))).to.equal('INSUFFICIENT_SCOPE');
    expect(keyScopes(adminOnly, 'tenant_admin')).to.deep.equal(['admin']);
    expect(code(() => keyScopes(adminOnly, 'member'))).to.equal('INSUFFICIENT_SCOPE');
    expect(keyScopes(tenantAdmin, 'member')).to.deep.equal(MEMBER);
    expect(code(() => keyScopes(tenantAdmin, 'member', ['admin']))).to.equal('INSUFFICIENT_SCOPE');
    expect(code(() => keyScopes(member, 'member', ['root']))).to.equal('INVALID_FIELD');
    expect(keyScopes(member, 'member', ['sessions:read', 'sessions:read'])).to.deep.equal(['sessions:read']);
    expect(keyScopes(null, 'platform_admin')).to.deep.equal(ALL);
  });
});

describe('policies: changes to users', () => {
  it('platform admins may make every change', () => {
    for (const change of [
      { kind: 'activate' },
      { kind: 'suspend' },
      { kind: 'reset_mfa' },
      { kind: 'set_tier', tier: 'enterprise' },
    ] as const) {
      expect(
        code(() =>
          assertUserChange(platform, user({ status: 'suspended', suspended_by_role: 'platform_admin' }), change),
        ),
      ).to.equal(null);
    }
    expect(
      code(() =>
        assertUserChange(platform, user({ id: 'usr_platform_admin', tenant_id: null, role: 'platform_admin' }), {
          kind: 'set_tier',
          tier: 'enterprise',
        }),
      ),
    ).to.equal(null);
    expect(
      code(() => assertUserChange(platform, null, { kind: 'create', role: 'platform_admin', tier: 'enterprise' })),
    ).to.equal(null);
  });

  it('a tenant admin cannot lift a suspension the platform made (nor one from before who-suspended was kept)', () => {
    expect(
      code(() =>
        assertUserChange(tenantAdmin, user({ status: 'suspended', suspended_by_role: 'platform_admin' }), {
          kind: 'activate',
        }),
      ),
    ).to.equal('FORBIDDEN');
    expect(
      code(() =>
        assertUserChange(tenantAdmin, user({ status: 'suspended', suspended_by_role: null }), { kind: 'activate' }),
      ),
    ).to.equal('FORBIDDEN');
    expect(
      code(() =>
        assertUserChange(tenantAdmin, user({ status: 'suspended', suspended_by_role: 'tenant_admin' }), {
          kind: 'activate',
        }),
      ),
    ).to.equal(null);
    expect(code(() => assertUserChange(tenantAdmin, user(), { kind: 'activate' }))).to.equal(null);
  });

  it('suspendedBy keeps a platform suspension when a tenant admin suspends again', () => {
    expect(suspendedBy(tenantAdmin, { status: 'active', suspended_by_role: null })).to.equal('tenant_admin');
    expect(suspendedBy(tenantAdmin, { status: 'suspended', suspended_by_role: 'platform_admin' })).to.equal(
      'platform_admin',
    );
    expect(suspendedBy(tenantAdmin, { status: 'suspended', suspended_by_role: 'tenant_admin' })).to.equal(
      'tenant_admin',
    );
    expect(suspendedBy(platform, { status: 'suspended', suspended_by_role: 'tenant_admin' })).to.equal(
      'platform_admin',
    );
  });

  it("tiers: a tenant admin sets a member's up to its own, never its own nor an administrator's", () => {
    expect(code(() => assertUserChange(tenantAdmin, user(), { kind: 'set_tier', tier: 'team' }))).to.equal(null);
    expect(code(() => assertUserChange(tenantAdmin, user(), { kind: 'set_tier', tier: 'individual' }))).to.equal(null);
    expect(code(() => assertUserChange(tenantAdmin, user(), { kind: 'set_tier', tier: 'enterprise' }))).to.equal(
      'FORBIDDEN',
    );
    expect(
      code(() =>
        assertUserChange(tenantAdmin, user({ id: 'usr_tenant_admin', role: 'tenant_admin' }), {
          kind: 'set_tier',
          tier: 'individual',
        }),
      ),
    ).to.equal('FORBIDDEN');
    expect(
      code(() =>
        assertUserChange(tenantAdmin, user({ id: 'usr_peer', role: 'tenant_admin' }), {
          kind: 'set_tier',
          tier: 'individual',
        }),
      ),
    ).to.equal('FORBIDDEN');
    expect(
      code(() => assertUserChange(tenantAdmin, null, { kind: 'create', role: 'member', tier: 'enterprise' })),
    ).to.equal('FORBIDDEN');
    expect(
      code(() => assertUserChange(tenantAdmin, null, { kind: 'create', role: 'tenant_admin', tier: 'team' })),
    ).to.equal(null);
    expect(
      code(() => assertUserChange(tenantAdmin, null, { kind: 'create', role: 'platform_admin', tier: 'individual' })),
    ).to.equal('FORBIDDEN');
  });

  it('outside the reach is 404 like a missing user; without an admin credential, 403', () => {
    expect(code(() => assertUserChange(tenantAdmin, user({ tenant_id: 'ten_b' }), { kind: 'suspend' }))).to.equal(
      'NOT_FOUND',
    );
    expect(code(() => assertUserChange(tenantAdmin, user({ tenant_id: null }), { kind: 'reset_mfa' }))).to.equal(
      'NOT_FOUND',
    );
    expect(code(() => assertUserChange(member, user(), { kind: 'suspend' }))).to.equal('FORBIDDEN');
    expect(code(() => assertUserChange(key('tenant_admin', MEMBER), user(), { kind: 'suspend' }))).to.equal(
      'FORBIDDEN',
    );
  });
});

describe('policies: credits', () => {
  it('a tenant admin never grants to itself; a platform admin may', () => {
    expect(code(() => assertCanGrant(tenantAdmin, { id: 'usr_tenant_admin', tenant_id: 'ten_a' }))).to.equal(
      'FORBIDDEN',
    );
    expect(code(() => assertCanGrant(tenantAdmin, { id: 'usr_m', tenant_id: 'ten_a' }))).to.equal(null);
    expect(code(() => assertCanGrant(tenantAdmin, { id: 'usr_m', tenant_id: 'ten_b' }))).to.equal('NOT_FOUND');
    expect(code(() => assertCanGrant(platform, { id: 'usr_platform_admin', tenant_id: null }))).to.equal(null);
    expect(code(() => assertCanGrant(member, { id: 'usr_member', tenant_id: 'ten_a' }))).to.equal('FORBIDDEN');
  });
});
