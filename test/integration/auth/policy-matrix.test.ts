import { expect } from 'chai';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import {
  auditRows,
  buildTenant,
  buildUser,
  mintToken,
  platformAdmin,
  uniqueEmail,
  type TestUser,
} from '../../helpers/factories.js';
import type { ApiResponse } from '../../helpers/http.js';
import { closeClients, connect, seedSession } from '../stream/support.js';

/**
 * Who may do what (docs/API.md, "Roles and credentials"), against a real daemon:
 * every role with every kind of credential, for every power the API has. An
 * API key acts with the intersection of its scopes and its owner's role: an
 * administrator's key without the `admin` scope is a member's key.
 */

const ALL = ['agents:execute', 'sessions:read', 'credits:read', 'keys:manage', 'admin'];
const NO_ADMIN = ['agents:execute', 'sessions:read', 'credits:read', 'keys:manage'];

const COLUMNS = [
  'member/jwt',
  'member/key',
  'tenant_admin/jwt',
  'tenant_admin/key+admin',
  'tenant_admin/key-admin',
  'platform_admin/jwt',
  'platform_admin/key+admin',
  'platform_admin/key-admin',
] as const;
type Column = (typeof COLUMNS)[number];

interface Actor {
  column: Column;
  user: TestUser;
  auth: { token?: string; apiKey?: string };
}

/** The outcome of a request as the matrix states it: the status, and the error code of a 403. */
const outcome = (r: ApiResponse): string => (r.status === 403 ? `403 ${r.body?.error?.code}` : String(r.status));

const S = '403 INSUFFICIENT_SCOPE';
const F = '403 FORBIDDEN';

describeStorage('authorization policy: role x credential x action', (backend) => {
  let d: TestDaemon;
  let root: string;
  let tenantA: string;
  let tenantB: string;
  let member: TestUser;
  let tenantAdmin: TestUser;
  let peerAdmin: TestUser;
  let platform: TestUser;
  /** A member of tenant A whose session the others try to see and cancel. */
  let other: TestUser;
  let otherInB: TestUser;
  let finished: string;
  let running: string;
  const actors = new Map<Column, Actor>();

  const key = async (u: TestUser, scopes: string[]): Promise<string> => {
    const r = await d.api.post('/v1/api-keys', { name: `matrix ${scopes.length}`, scopes }, { token: u.token });
    expect(r.status, r.text).to.equal(201);
    return r.body.key as string;
  };

  before(async () => {
    d = await startDaemon({ backend });
    const rootUser = await platformAdmin(d);
    root = mintToken(d, rootUser);
    platform = { user: rootUser, email: rootUser.email, password: '', token: root };
    tenantA = await buildTenant(d);
    tenantB = await buildTenant(d);
    member = await buildUser(d, { tenantId: tenantA });
    tenantAdmin = await buildUser(d, { tenantId: tenantA, role: 'admin', tier: 'team' });
    peerAdmin = await buildUser(d, { tenantId: tenantA, role: 'admin', tier: 'individual' });
    other = await buildUser(d, { tenantId: tenantA });
    otherInB = await buildUser(d, { tenantId: tenantB });
    finished = await seedSession(d, other, 3);
    running = await seedSession(d, other, 1, { status: 'running' });
    const add = (column: Column, user: TestUser, auth: Actor['auth']) => actors.set(column, { column, user, auth });
    add('member/jwt', member, { token: member.token });
    add('member/key', member, { apiKey: await key(member, NO_ADMIN) });
    add('tenant_admin/jwt', tenantAdmin, { token: tenantAdmin.token });
    add('tenant_admin/key+admin', tenantAdmin, { apiKey: await key(tenantAdmin, ALL) });
    add('tenant_admin/key-admin', tenantAdmin, { apiKey: await key(tenantAdmin, NO_ADMIN) });
    add('platform_admin/jwt', platform, { token: root });
    add('platform_admin/key+admin', platform, { apiKey: await key(platform, ALL) });
    add('platform_admin/key-admin', platform, { apiKey: await key(platform, NO_ADMIN) });
  });
  after(async () => {
    closeClients();
    await d?.stop();
  });

  /** A fresh member of tenant A, suspended by `by` when given. */
  async function target(by?: string): Promise<TestUser> {
    const u = await buildUser(d, { tenantId: tenantA });
    if (by) {
      const s = await d.api.post(`/v1/admin/users/${u.user.id}/suspend`, {}, { token: by });
      expect(s.status, s.text).to.equal(200);
    }
    return u;
  }

  const rows: Array<[string, (a: Actor) => Promise<string>, string[]]> = [
    [
      "GET /v1/sessions lists another member's session of the tenant",
      async (a) => {
        const r = await d.api.get('/v1/sessions?limit=100', a.auth);
        if (r.status !== 200) return outcome(r);
        return r.body.sessions.some((s: { id: string }) => s.id === finished) ? 'listed' : 'not listed';
      },
      ['not listed', 'not listed', 'listed', 'listed', 'not listed', 'not listed', 'not listed', 'not listed'],
    ],
    [
      "GET /v1/sessions/:id/events of another member's session",
      async (a) => outcome(await d.api.get(`/v1/sessions/${finished}/events`, a.auth)),
      ['404', '404', '200', '200', '404', '404', '404', '404'],
    ],
    [
      "POST /v1/sessions/:id/cancel of another member's running session",
      async (a) => outcome(await d.api.post(`/v1/sessions/${running}/cancel`, {}, a.auth)),
      ['404', '404', '200', '200', '404', '404', '404', '404'],
    ],
    [
      'GET /v1/admin/sessions (the tenant or everything)',
      async (a) => outcome(await d.api.get('/v1/admin/sessions', a.auth)),
      [S, S, '200', '200', S, '200', '200', S],
    ],
    [
      "POST /v1/admin/sessions/:id/cancel of a tenant member's running session",
      async (a) => outcome(await d.api.post(`/v1/admin/sessions/${running}/cancel`, {}, a.auth)),
      [S, S, '200', '200', S, '200', '200', S],
    ],
    [
      'POST /v1/api-keys (own key, scope agents:execute)',
      async (a) => outcome(await d.api.post('/v1/api-keys', { name: 'k', scopes: ['agents:execute'] }, a.auth)),
      ['201', F, '201', F, F, '201', F, F],
    ],
    [
      'POST /v1/admin/api-keys for oneself with all five scopes',
      async (a) =>
        outcome(await d.api.post('/v1/admin/api-keys', { user_id: a.user.user.id, name: 'k', scopes: ALL }, a.auth)),
      [S, S, '201', '201', S, '201', '201', S],
    ],
    [
      'POST /v1/admin/users/:id/suspend of a tenant member',
      async (a) => outcome(await d.api.post(`/v1/admin/users/${(await target()).user.id}/suspend`, {}, a.auth)),
      [S, S, '200', '200', S, '200', '200', S],
    ],
    [
      'POST /v1/admin/users/:id/activate of a member the platform admin suspended',
      async (a) => outcome(await d.api.post(`/v1/admin/users/${(await target(root)).user.id}/activate`, {}, a.auth)),
      [S, S, F, F, S, '200', '200', S],
    ],
    [
      'POST /v1/admin/users/:id/activate of a member a tenant admin suspended',
      async (a) =>
        outcome(await d.api.post(`/v1/admin/users/${(await target(tenantAdmin.token)).user.id}/activate`, {}, a.auth)),
      [S, S, '200', '200', S, '200', '200', S],
    ],
    [
      "POST /v1/admin/users/:id/tier: one's own tier, to enterprise",
      async (a) => outcome(await d.api.post(`/v1/admin/users/${a.user.user.id}/tier`, { tier: 'enterprise' }, a.auth)),
      [S, S, F, F, S, '200', '200', S],
    ],
    [
      "POST /v1/admin/users/:id/tier: a member's tier, up to the tenant admin's own (team)",
      async (a) =>
        outcome(await d.api.post(`/v1/admin/users/${(await target()).user.id}/tier`, { tier: 'team' }, a.auth)),
      [S, S, '200', '200', S, '200', '200', S],
    ],
    [
      "POST /v1/admin/users/:id/tier: a member's tier, above the tenant admin's own (enterprise)",
      async (a) =>
        outcome(await d.api.post(`/v1/admin/users/${(await target()).user.id}/tier`, { tier: 'enterprise' }, a.auth)),
      [S, S, F, F, S, '200', '200', S],
    ],
    [
      "POST /v1/admin/users/:id/tier: another tenant admin's tier",
      async (a) =>
        outcome(await d.api.post(`/v1/admin/users/${peerAdmin.user.id}/tier`, { tier: 'individual' }, a.auth)),
      [S, S, F, F, S, '200', '200', S],
    ],
    [
      "POST /v1/admin/users: a member above the tenant admin's tier (enterprise)",
      async (a) =>
        outcome(await d.api.post('/v1/admin/users', { email: uniqueEmail('m'), tier: 'enterprise' }, a.auth)),
      [S, S, F, F, S, '201', '201', S],
    ],
    [
      "POST /v1/admin/users: a member at the tenant admin's tier (team)",
      async (a) => outcome(await d.api.post('/v1/admin/users', { email: uniqueEmail('m'), tier: 'team' }, a.auth)),
      [S, S, '201', '201', S, '201', '201', S],
    ],
    [
      "GET /v1/admin/users/:id of another tenant's user",
      async (a) => outcome(await d.api.get(`/v1/admin/users/${otherInB.user.id}`, a.auth)),
      [S, S, '404', '404', S, '200', '200', S],
    ],
    [
      'POST /v1/admin/tenants',
      async (a) => outcome(await d.api.post('/v1/admin/tenants', { name: `t-${uniqueEmail('x')}` }, a.auth)),
      [S, S, F, F, S, '201', '201', S],
    ],
    [
      'GET /v1/admin/audit',
      async (a) => outcome(await d.api.get('/v1/admin/audit?limit=1', a.auth)),
      [S, S, '200', '200', S, '200', '200', S],
    ],
    [
      'POST /v1/admin/audit/verify',
      async (a) => outcome(await d.api.post('/v1/admin/audit/verify', {}, a.auth)),
      [S, S, F, F, S, '200', '200', S],
    ],
    [
      'POST /v1/admin/credits/verify',
      async (a) => outcome(await d.api.post('/v1/admin/credits/verify', {}, a.auth)),
      [S, S, F, F, S, '200', '200', S],
    ],
    [
      'POST /v1/admin/credits/grant to oneself',
      async (a) =>
        outcome(
          await d.api.post('/v1/admin/credits/grant', { user_id: a.user.user.id, amount: 1, reason: 'matrix' }, a.auth),
        ),
      [S, S, F, F, S, '201', '201', S],
    ],
    [
      "GET /v1/admin/credits/balance of another tenant's user",
      async (a) => outcome(await d.api.get(`/v1/admin/credits/balance?user_id=${otherInB.user.id}`, a.auth)),
      [S, S, '404', '404', S, '200', '200', S],
    ],
  ];

  for (const [action, run, expected] of rows) {
    it(action, async () => {
      expect(expected, 'one expectation per column').to.have.length(COLUMNS.length);
      const got: Record<string, string> = {};
      const want: Record<string, string> = {};
      for (const [i, column] of COLUMNS.entries()) {
        got[column] = await run(actors.get(column)!);
        want[column] = expected[i]!;
      }
      expect(got).to.deep.equal(want);
    });
  }

  describe('API keys mint no more than they hold', () => {
    it('a key scoped only `admin` cannot mint a key with other scopes, for its owner or a member', async () => {
      const adminOnly = await key(tenantAdmin, ['admin']);
      const five = await d.api.post(
        '/v1/admin/api-keys',
        { user_id: tenantAdmin.user.id, name: 'escalate', scopes: ALL },
        { apiKey: adminOnly },
      );
      expect(five.status, five.text).to.equal(403);
      expect(five.body.error.code).to.equal('INSUFFICIENT_SCOPE');
      const forMember = await d.api.post(
        '/v1/admin/api-keys',
        { user_id: member.user.id, name: 'escalate', scopes: ['agents:execute'] },
        { apiKey: adminOnly },
      );
      expect(forMember.status, forMember.text).to.equal(403);
      // Without `scopes`, a key gets what both the owner holds and the minting key holds.
      const dflt = await d.api.post(
        '/v1/admin/api-keys',
        { user_id: tenantAdmin.user.id, name: 'default' },
        { apiKey: adminOnly },
      );
      expect(dflt.status, dflt.text).to.equal(201);
      expect(dflt.body.api_key.scopes).to.deep.equal(['admin']);
      const same = await d.api.post(
        '/v1/admin/api-keys',
        { user_id: tenantAdmin.user.id, name: 'same', scopes: ['admin'] },
        { apiKey: adminOnly },
      );
      expect(same.status, same.text).to.equal(201);
    });

    it('a JWT mints keys within its role; a platform key with all scopes mints any subset for a member', async () => {
      const memberAdmin = await d.api.post('/v1/api-keys', { name: 'x', scopes: ['admin'] }, { token: member.token });
      expect(outcome(memberAdmin)).to.equal(S);
      const full = actors.get('platform_admin/key+admin')!.auth;
      const forMember = await d.api.post(
        '/v1/admin/api-keys',
        { user_id: member.user.id, name: 'ci', scopes: ['sessions:read'] },
        full,
      );
      expect(forMember.status, forMember.text).to.equal(201);
      expect(forMember.body.api_key.scopes).to.deep.equal(['sessions:read']);
    });
  });

  describe('suspensions', () => {
    it("a tenant admin's suspend of a platform-suspended user does not make it liftable by the tenant", async () => {
      const u = await target(root);
      expect(
        (await d.api.post(`/v1/admin/users/${u.user.id}/suspend`, {}, { token: tenantAdmin.token })).status,
      ).to.equal(200);
      expect(
        outcome(await d.api.post(`/v1/admin/users/${u.user.id}/activate`, {}, { token: tenantAdmin.token })),
      ).to.equal(F);
      // The refusal is audited, with the tenant admin as the actor.
      const denied = (await auditRows(d)).filter(
        (e) => e.action === 'user.activate' && e.outcome === 'denied' && e.target_id === u.user.id,
      );
      expect(denied.map((e) => e.actor_id)).to.deep.equal([tenantAdmin.user.id]);
      expect(
        (await d.api.post(`/v1/admin/users/${u.user.id}/activate`, {}, { token: root })).body.user.status,
      ).to.equal('active');
      // Lifted by the platform, a later tenant suspension is the tenant's to lift.
      expect(
        (await d.api.post(`/v1/admin/users/${u.user.id}/suspend`, {}, { token: tenantAdmin.token })).status,
      ).to.equal(200);
      expect(
        (await d.api.post(`/v1/admin/users/${u.user.id}/activate`, {}, { token: tenantAdmin.token })).body.user.status,
      ).to.equal('active');
    });
  });

  describe('the stream follows the same rule', () => {
    it("a tenant admin's key without `admin` cannot subscribe to another member's session; its JWT can", async () => {
      const withoutAdmin = await connect(d, actors.get('tenant_admin/key-admin')!.auth);
      withoutAdmin.send({ type: 'subscribe', session_id: finished, after: 0 });
      await withoutAdmin.until(
        (m) => m.some((x) => x.type === 'error' || typeof x.seq === 'number'),
        10_000,
        'an answer',
      );
      expect(withoutAdmin.errors().map((e) => e.error?.code)).to.deep.equal(['NOT_FOUND']);
      expect(withoutAdmin.events(finished)).to.deep.equal([]);

      const jwt = await connect(d, actors.get('tenant_admin/jwt')!.auth);
      jwt.send({ type: 'subscribe', session_id: finished, after: 0 });
      await jwt.until(
        (m) => m.filter((x) => x.session_id === finished && typeof x.seq === 'number').length === 3,
        10_000,
        'the replay',
      );
      expect(jwt.errors()).to.deep.equal([]);
    });
  });
});
