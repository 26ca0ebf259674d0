import { expect } from 'chai';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import {
  auditRows,
  buildApiKey,
  buildTenant,
  buildUser,
  mintToken,
  platformAdmin,
  principal,
  uniqueEmail,
} from '../../helpers/factories.js';

describeStorage('admin API: users, tenants, keys, tenant isolation', (backend) => {
  let d: TestDaemon;
  let root: string;
  let tenantA: string;
  let tenantB: string;
  let adminA: string;
  before(async () => {
    d = await startDaemon({ backend });
    root = mintToken(d, await platformAdmin(d));
    tenantA = await buildTenant(d, 'Acme');
    tenantB = await buildTenant(d, 'Globex');
    // Enterprise: a tenant admin gives tiers up to its own.
    const created = await d.api.post(
      '/v1/admin/users',
      { email: uniqueEmail('admin-a'), role: 'admin', tenant_id: tenantA, tier: 'enterprise' },
      { token: root },
    );
    expect(created.status, created.text).to.equal(201);
    expect(created.body.user.role).to.equal('tenant_admin');
    adminA = mintToken(d, await d.container.users.findUser(principal(await platformAdmin(d)), created.body.user.id));
  });
  after(async () => d?.stop());

  it('platform admin creates tenants (names unique) and lists them', async () => {
    const dup = await d.api.post('/v1/admin/tenants', { name: 'Acme' }, { token: root });
    expect(dup.status).to.equal(409);
    expect(dup.body.error.code).to.equal('ALREADY_EXISTS');
    const list = await d.api.get('/v1/admin/tenants', { token: root });
    expect(list.body.tenants.map((t: { name: string }) => t.name)).to.include.members(['Acme', 'Globex']);
    const asTenantAdmin = await d.api.get('/v1/admin/tenants', { token: adminA });
    expect(asTenantAdmin.body.tenants.map((t: { id: string }) => t.id)).to.deep.equal([tenantA]);
    expect((await d.api.post('/v1/admin/tenants', { name: 'Mine' }, { token: adminA })).status).to.equal(403);
  });

  it('creates users with email uniqueness, tier and role; refuses a duplicate and a short password', async () => {
    const email = uniqueEmail('new');
    const r = await d.api.post(
      '/v1/admin/users',
      { email, tier: 'team', password: 'long-enough-password' },
      { token: root },
    );
    expect(r.status, r.text).to.equal(201);
    expect(r.body.user).to.include({ email, tier: 'team', role: 'member', status: 'active', tenant_id: null });
    const dup = await d.api.post('/v1/admin/users', { email: email.toUpperCase() }, { token: root });
    expect(dup.status).to.equal(409);
    const short = await d.api.post('/v1/admin/users', { email: uniqueEmail(), password: 'short' }, { token: root });
    expect(short.status).to.equal(400);
    const bad = await d.api.post('/v1/admin/users', { email: 'not-an-email' }, { token: root });
    expect(bad.status).to.equal(400);
    expect(
      (await d.api.get(`/v1/admin/users?email=${encodeURIComponent(email)}`, { token: root })).body.users,
    ).to.have.length(1);
  });

  it('a tenant admin sees and manages only its tenant; other ids answer 404 like missing ones', async () => {
    const inA = await d.api.post('/v1/admin/users', { email: uniqueEmail('in-a') }, { token: adminA });
    expect(inA.status).to.equal(201);
    expect(inA.body.user.tenant_id).to.equal(tenantA);
    const inB = (
      await d.api.post('/v1/admin/users', { email: uniqueEmail('in-b'), tenant_id: tenantB }, { token: root })
    ).body.user;
    const listed = await d.api.get('/v1/admin/users?limit=200', { token: adminA });
    expect(listed.body.users).to.not.be.empty;
    expect(listed.body.users.every((u: { tenant_id: string }) => u.tenant_id === tenantA)).to.equal(true);
    const missing = await d.api.get('/v1/admin/users/usr_00000000000000000000000000', { token: adminA });
    const other = await d.api.get(`/v1/admin/users/${inB.id}`, { token: adminA });
    expect(other.status).to.equal(404);
    expect(other.body.error).to.deep.equal({ ...missing.body.error });
    for (const action of ['suspend', 'activate', 'reset-mfa']) {
      expect((await d.api.post(`/v1/admin/users/${inB.id}/${action}`, {}, { token: adminA })).status).to.equal(404);
    }
    expect(
      (await d.api.post(`/v1/admin/users/${inB.id}/tier`, { tier: 'enterprise' }, { token: adminA })).status,
    ).to.equal(404);
    expect(
      (await d.api.post('/v1/admin/users', { email: uniqueEmail(), tenant_id: tenantB }, { token: adminA })).status,
    ).to.equal(404);
    expect((await d.api.post('/v1/admin/api-keys', { user_id: inB.id, name: 'x' }, { token: adminA })).status).to.equal(
      404,
    );
    expect((await d.api.get(`/v1/admin/api-keys?user_id=${inB.id}`, { token: adminA })).status).to.equal(404);
    expect((await d.api.get(`/v1/admin/users/${inB.email}`, { token: adminA })).status).to.equal(404);
  });

  it('suspends (tokens stop at once), activates, sets tier and resets MFA, each audited with its actor', async () => {
    const u = await buildUser(d, { tenantId: tenantA });
    expect((await d.api.get('/v1/me', { token: u.token })).status).to.equal(200);
    const s = await d.api.post(`/v1/admin/users/${u.user.id}/suspend`, {}, { token: adminA });
    expect(s.body.user.status).to.equal('suspended');
    expect((await d.api.get('/v1/me', { token: u.token })).status).to.equal(401);
    expect(
      (await d.api.post(`/v1/admin/users/${u.user.id}/activate`, {}, { token: adminA })).body.user.status,
    ).to.equal('active');
    // Tokens issued before the suspension stay dead; new ones work.
    expect((await d.api.get('/v1/me', { token: u.token })).status).to.equal(401);
    expect((await d.api.get('/v1/me', { token: mintToken(d, u.user) })).status).to.equal(200);
    const tier = await d.api.post(`/v1/admin/users/${u.user.id}/tier`, { tier: 'enterprise' }, { token: adminA });
    expect(tier.body.user.tier).to.equal('enterprise');
    expect(
      (await d.api.post(`/v1/admin/users/${u.user.id}/tier`, { tier: 'platinum' }, { token: adminA })).status,
    ).to.equal(400);
    expect(
      (await d.api.post(`/v1/admin/users/${u.user.id}/reset-mfa`, {}, { token: adminA })).body.user.mfa_enabled,
    ).to.equal(false);
    const rows = await auditRows(d);
    for (const a of ['user.suspend', 'user.activate', 'user.set_tier', 'user.reset_mfa']) {
      const row = rows.find((e) => e.action === a && e.target_id === u.user.id);
      expect(row?.actor_type, a).to.equal('admin');
      expect(row?.tenant_id, a).to.equal(tenantA);
    }
  });

  it('refuses admin endpoints to members and self-suspension', async () => {
    const m = await buildUser(d);
    const r = await d.api.get('/v1/admin/users', { token: m.token });
    expect(r.status).to.equal(403);
    expect(r.body.error.code).to.equal('INSUFFICIENT_SCOPE');
    const me = await d.container.users.findUser(principal(await platformAdmin(d)), (await platformAdmin(d)).id);
    expect((await d.api.post(`/v1/admin/users/${me.id}/suspend`, {}, { token: root })).body.error.code).to.equal(
      'INVALID_STATE',
    );
  });

  it('manages API keys for users: created once, listed without the key, revoked', async () => {
    const u = await buildUser(d, { tenantId: tenantA });
    const c = await d.api.post(
      '/v1/admin/api-keys',
      { user_id: u.email, name: 'ci', scopes: ['credits:read'], rate_limit_per_hour: 50 },
      { token: adminA },
    );
    expect(c.status, c.text).to.equal(201);
    expect(c.body.key).to.match(/^ak_live_[0-9A-Za-z]{49}$/);
    expect(c.body.api_key).to.include({ name: 'ci', rate_limit_per_hour: 50, status: 'active', user_id: u.user.id });
    const list = await d.api.get(`/v1/admin/api-keys?user_id=${u.user.id}`, { token: adminA });
    expect(list.body.api_keys).to.have.length(1);
    expect(list.text).not.to.include(c.body.key);
    const stored = await d.container.database.db
      .selectFrom('api_keys')
      .selectAll()
      .where('id', '=', c.body.api_key.id)
      .executeTakeFirstOrThrow();
    expect(JSON.stringify(stored)).not.to.include(c.body.key);
    expect((await d.api.get('/v1/me', { apiKey: c.body.key })).body.scopes).to.deep.equal(['credits:read']);
    const rv = await d.api.delete(`/v1/admin/api-keys/${c.body.api_key.id}`, { token: adminA });
    expect(rv.body.api_key.status).to.equal('revoked');
    expect((await d.api.delete(`/v1/admin/api-keys/${c.body.api_key.id}`, { token: root })).status).to.equal(200);
    expect((await d.api.delete('/v1/admin/api-keys/key_nonexistent', { token: root })).status).to.equal(404);
  });

  it("own API keys: bearer only, never another user's, expiry in the past refused", async () => {
    const u = await buildUser(d);
    const v = await buildUser(d);
    const k = await buildApiKey(d, u);
    expect((await d.api.get('/v1/api-keys', { apiKey: k.key })).status).to.equal(403);
    const mine = await d.api.get('/v1/api-keys', { token: u.token });
    expect(mine.body.api_keys.map((x: { id: string }) => x.id)).to.deep.equal([k.id]);
    expect(mine.body.api_keys[0].prefix).to.equal(k.key.slice(0, 12));
    expect((await d.api.delete(`/v1/api-keys/${k.id}`, { token: v.token })).status).to.equal(404);
    const past = await d.api.post(
      '/v1/api-keys',
      { name: 'old', expires_at: '2001-01-01T00:00:00Z' },
      { token: u.token },
    );
    expect(past.status).to.equal(400);
    const ctrl = await d.api.post('/v1/api-keys', { name: 'bad\u0007name' }, { token: u.token });
    expect(ctrl.status).to.equal(400);
    const bogus = await d.api.post('/v1/api-keys', { name: 'x', scopes: ['root'] }, { token: u.token });
    expect(bogus.status).to.equal(400);
  });
});
