import { expect } from 'chai';
import { ManualClock } from '../../../daemon/clock.js';
import { hashSecret } from '../../../daemon/auth/api-key-format.js';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import {
  auditRows,
  buildApiKey,
  buildTenant,
  buildUser,
  mintToken,
  platformAdmin,
  type TestUser,
} from '../../helpers/factories.js';

/**
 * API key lifecycle (docs/API.md, "API keys"): PATCH changes a key within the
 * rules of creation, POST .../roll gives it a new secret under the same id with
 * a grace period for the old one. The attacks come first: widening a key's
 * scopes, touching someone else's key, and an old secret outliving its roll.
 */
describeStorage('API key lifecycle: update, roll, last use', (backend) => {
  let d: TestDaemon;
  let clock: ManualClock;
  let root: TestUser;
  let member: TestUser;
  let other: TestUser;
  let tenantA: string;
  let tenantB: string;
  let adminA: TestUser;
  let memberA: TestUser;
  let memberB: TestUser;

  /** A fresh access token: the clock moves, and access tokens live 15 minutes. */
  const tok = (u: TestUser) => mintToken(d, u.user);
  /** A key made through the API with a fresh token (buildApiKey's would have expired). */
  const newKey = (u: TestUser, body: Record<string, unknown> = {}) => buildApiKey(d, { ...u, token: tok(u) }, body);
  const me = (key: string) => d.api.get('/v1/me', { apiKey: key });
  const HOUR = 3_600_000;

  before(async () => {
    clock = new ManualClock(Date.now());
    d = await startDaemon({ backend, clock });
    const rootRow = await platformAdmin(d);
    root = { user: rootRow, email: rootRow.email, password: '', token: mintToken(d, rootRow) };
    member = await buildUser(d);
    other = await buildUser(d);
    tenantA = await buildTenant(d);
    tenantB = await buildTenant(d);
    adminA = await buildUser(d, { role: 'admin', tenantId: tenantA, tier: 'enterprise' });
    memberA = await buildUser(d, { tenantId: tenantA });
    memberB = await buildUser(d, { tenantId: tenantB });
  });
  after(async () => d?.stop());

  describe('attacks', () => {
    it('a member cannot give its own key `admin`: 403 INSUFFICIENT_SCOPE, as at creation, and the key is unchanged', async () => {
      const k = await newKey(member, { scopes: ['sessions:read'] });
      const created = await d.api.post('/v1/api-keys', { name: 'x', scopes: ['admin'] }, { token: tok(member) });
      const r = await d.api.patch(
        `/v1/api-keys/${k.id}`,
        { scopes: ['sessions:read', 'admin'] },
        { token: tok(member) },
      );
      expect(r.status, r.text).to.equal(403);
      expect(r.body.error.code).to.equal('INSUFFICIENT_SCOPE').and.equal(created.body.error.code);
      expect((await me(k.key)).body.scopes).to.deep.equal(['sessions:read']);
      const listed = (await d.api.get('/v1/api-keys', { token: tok(member) })).body.api_keys.find(
        (x: { id: string }) => x.id === k.id,
      );
      expect(listed.scopes).to.deep.equal(['sessions:read']);
    });

    it("a key scoped only `admin` cannot widen any key beyond `admin` (its own or a member's)", async () => {
      const adminOnly = await newKey(root, { name: 'admin only', scopes: ['admin'] });
      const target = await newKey(member, { scopes: ['sessions:read'] });
      const own = await d.api.patch(
        `/v1/admin/api-keys/${adminOnly.id}`,
        { scopes: ['admin', 'agents:execute'] },
        { apiKey: adminOnly.key },
      );
      expect(own.status, own.text).to.equal(403);
      expect(own.body.error.code).to.equal('INSUFFICIENT_SCOPE');
      const theirs = await d.api.patch(
        `/v1/admin/api-keys/${target.id}`,
        { scopes: ['sessions:read', 'credits:read'] },
        { apiKey: adminOnly.key },
      );
      expect(theirs.status, theirs.text).to.equal(403);
      expect(theirs.body.error.code).to.equal('INSUFFICIENT_SCOPE');
      // Renaming is within its power; scopes it does not hold are not.
      const renamed = await d.api.patch(
        `/v1/admin/api-keys/${target.id}`,
        { name: 'renamed by admin key' },
        { apiKey: adminOnly.key },
      );
      expect(renamed.status, renamed.text).to.equal(200);
      expect(renamed.body.api_key).to.include({ name: 'renamed by admin key' });
      expect(renamed.body.api_key.scopes).to.deep.equal(['sessions:read']);
    });

    it("no administrator gives a member's key `admin`: the owner does not hold it", async () => {
      const k = await newKey(member, { scopes: ['sessions:read'] });
      const r = await d.api.patch(`/v1/admin/api-keys/${k.id}`, { scopes: ['admin'] }, { token: tok(root) });
      expect(r.status, r.text).to.equal(403);
      expect(r.body.error.code).to.equal('INSUFFICIENT_SCOPE');
      expect((await me(k.key)).body.scopes).to.deep.equal(['sessions:read']);
    });

    it("another user's key is 404 NOT_FOUND on the self routes (update and roll), exactly like a missing one", async () => {
      const k = await newKey(other);
      const missing = await d.api.patch(
        '/v1/api-keys/key_00000000000000000000000000',
        { name: 'x' },
        { token: tok(member) },
      );
      const upd = await d.api.patch(`/v1/api-keys/${k.id}`, { name: 'mine now' }, { token: tok(member) });
      const roll = await d.api.post(`/v1/api-keys/${k.id}/roll`, { grace_seconds: 0 }, { token: tok(member) });
      expect(upd.status).to.equal(404);
      expect(roll.status).to.equal(404);
      expect(upd.body.error).to.deep.equal(missing.body.error);
      expect(roll.body.error.code).to.equal('NOT_FOUND');
      expect((await me(k.key)).status, 'the victim key still works').to.equal(200);
      const row = await d.container.database.db
        .selectFrom('api_keys')
        .selectAll()
        .where('id', '=', k.id)
        .executeTakeFirstOrThrow();
      expect(row.name).to.equal('test key');
      expect(row.rolled_at).to.equal(null);
    });

    it("a member's access token is refused on the admin routes (403), and an API key on the self routes (bearer only)", async () => {
      const k = await newKey(member);
      expect((await d.api.patch(`/v1/admin/api-keys/${k.id}`, { name: 'x' }, { token: tok(member) })).status).to.equal(
        403,
      );
      expect((await d.api.post(`/v1/admin/api-keys/${k.id}/roll`, {}, { token: tok(member) })).status).to.equal(403);
      const byKey = await d.api.post(`/v1/api-keys/${k.id}/roll`, { grace_seconds: 0 }, { apiKey: k.key });
      expect(byKey.status).to.equal(403);
      expect(byKey.body.error.code).to.equal('FORBIDDEN');
      expect((await d.api.patch(`/v1/api-keys/${k.id}`, { name: 'x' }, { apiKey: k.key })).status).to.equal(403);
      expect((await me(k.key)).status, 'the key was not rolled').to.equal(200);
    });

    it("a tenant admin cannot update or roll another tenant's key, nor a key outside any tenant: 404", async () => {
      const kb = await newKey(memberB);
      const kn = await newKey(member);
      for (const id of [kb.id, kn.id]) {
        const u = await d.api.patch(`/v1/admin/api-keys/${id}`, { rate_limit_per_hour: 1 }, { token: tok(adminA) });
        expect(u.status, u.text).to.equal(404);
        expect(u.body.error.code).to.equal('NOT_FOUND');
        const r = await d.api.post(`/v1/admin/api-keys/${id}/roll`, { grace_seconds: 0 }, { token: tok(adminA) });
        expect(r.status, r.text).to.equal(404);
      }
      expect((await me(kb.key)).status).to.equal(200);
      expect((await me(kn.key)).status).to.equal(200);
      // Its own tenant's keys it manages.
      const ka = await newKey(memberA);
      const ok = await d.api.patch(`/v1/admin/api-keys/${ka.id}`, { rate_limit_per_hour: 7 }, { token: tok(adminA) });
      expect(ok.status, ok.text).to.equal(200);
      expect(ok.body.api_key.rate_limit_per_hour).to.equal(7);
    });

    it('an old secret rolled with grace 0 is refused at once, on the next request and the one after (no kept row answers)', async () => {
      const k = await newKey(member);
      // Warm every cache the hot path has: the key's hash, the kept row, the built principal.
      for (let i = 0; i < 3; i++) expect((await me(k.key)).status).to.equal(200);
      const r = await d.api.post(`/v1/api-keys/${k.id}/roll`, { grace_seconds: 0 }, { token: tok(member) });
      expect(r.status, r.text).to.equal(200);
      expect(r.body.previous_expires_at).to.equal(new Date(clock.now()).toISOString());
      for (let i = 0; i < 2; i++) {
        const old = await me(k.key);
        expect(old.status, `attempt ${i}`).to.equal(401);
        expect(old.body.error.code).to.equal('INVALID_TOKEN');
      }
      const fresh = await me(r.body.key);
      expect(fresh.status).to.equal(200);
      expect(fresh.body.api_key_id).to.equal(k.id);
      expect(r.body.api_key.previous_expires_at).to.equal(null);
      const row = await d.container.database.db
        .selectFrom('api_keys')
        .selectAll()
        .where('id', '=', k.id)
        .executeTakeFirstOrThrow();
      expect(row.previous_key_hash).to.equal(null);
    });

    it('revoking a rolled key ends both secrets at once', async () => {
      const k = await newKey(member);
      const r = await d.api.post(`/v1/api-keys/${k.id}/roll`, { grace_seconds: 3600 }, { token: tok(member) });
      expect((await me(k.key)).status).to.equal(200);
      expect((await me(r.body.key)).status).to.equal(200);
      const del = await d.api.delete(`/v1/api-keys/${k.id}`, { token: tok(member) });
      expect(del.status).to.equal(200);
      expect(del.body.api_key.previous_expires_at).to.equal(null);
      for (const key of [k.key, r.body.key, k.key, r.body.key]) {
        const res = await me(key);
        expect(res.status).to.equal(401);
        expect(res.body.error.code).to.equal('API_KEY_REVOKED');
      }
    });
  });

  describe('update', () => {
    it('changes name, scopes, rate limit and expiry; a field left out stays; null clears the expiry; the key sees it at once', async () => {
      const k = await newKey(member, {
        name: 'before',
        scopes: ['sessions:read', 'credits:read'],
        rate_limit_per_hour: 100,
        expires_at: new Date(clock.now() + 10 * 86_400_000).toISOString(),
      });
      expect((await d.api.get('/v1/credits/balance', { apiKey: k.key })).status).to.equal(200);
      const newExpiry = new Date(clock.now() + 30 * 86_400_000).toISOString();
      const r = await d.api.patch(
        `/v1/api-keys/${k.id}`,
        { name: 'after', scopes: ['sessions:read'], rate_limit_per_hour: 250, expires_at: newExpiry },
        { token: tok(member) },
      );
      expect(r.status, r.text).to.equal(200);
      expect(r.body.api_key).to.include({
        id: k.id,
        name: 'after',
        rate_limit_per_hour: 250,
        expires_at: newExpiry,
        status: 'active',
      });
      expect(r.body.api_key.scopes).to.deep.equal(['sessions:read']);
      // The narrowed key loses credits:read on its very next request.
      const denied = await d.api.get('/v1/credits/balance', { apiKey: k.key });
      expect(denied.status).to.equal(403);
      expect(denied.body.error.code).to.equal('INSUFFICIENT_SCOPE');
      const partial = await d.api.patch(`/v1/api-keys/${k.id}`, { expires_at: null }, { token: tok(member) });
      expect(partial.status, partial.text).to.equal(200);
      expect(partial.body.api_key).to.include({ name: 'after', rate_limit_per_hour: 250, expires_at: null });
      expect(partial.body.api_key.scopes).to.deep.equal(['sessions:read']);
      const listed = (await d.api.get('/v1/api-keys', { token: tok(member) })).body.api_keys.find(
        (x: { id: string }) => x.id === k.id,
      );
      expect(listed).to.include({ name: 'after', rate_limit_per_hour: 250, expires_at: null });
    });

    it('an empty body, an unknown field, a bad value or a past expiry answer 400 in the error envelope', async () => {
      const k = await newKey(member);
      for (const body of [
        {},
        { nmae: 'typo' },
        { name: 'ok', revoked_at: null },
        { rate_limit_per_hour: 0 },
        { scopes: ['root'] },
        { name: '' },
        { expires_at: new Date(clock.now() - 1000).toISOString() },
        { expires_at: 'soon' },
      ]) {
        const r = await d.api.patch(`/v1/api-keys/${k.id}`, body, { token: tok(member) });
        expect(r.status, JSON.stringify(body)).to.equal(400);
        expect(r.body.success).to.equal(false);
        expect(r.body.error.code, JSON.stringify(body)).to.equal('INVALID_FIELD');
        expect(r.body.error.type).to.equal('VALIDATION_ERROR');
      }
      const raw = await d.api.request('PATCH', `/v1/api-keys/${k.id}`, { token: tok(member) });
      expect(raw.status).to.equal(400);
    });

    it('a revoked or expired key cannot be updated nor rolled: 409 INVALID_STATE', async () => {
      const revoked = await newKey(member);
      await d.api.delete(`/v1/api-keys/${revoked.id}`, { token: tok(member) });
      const expiring = await newKey(member, { expires_at: new Date(clock.now() + HOUR).toISOString() });
      clock.advance(2 * HOUR);
      for (const k of [revoked, expiring]) {
        const u = await d.api.patch(`/v1/api-keys/${k.id}`, { expires_at: null }, { token: tok(member) });
        expect(u.status, u.text).to.equal(409);
        expect(u.body.error.code).to.equal('INVALID_STATE');
        const r = await d.api.post(`/v1/api-keys/${k.id}/roll`, {}, { token: tok(member) });
        expect(r.status, r.text).to.equal(409);
        expect(r.body.error.code).to.equal('INVALID_STATE');
      }
      expect((await me(expiring.key)).body.error.code).to.equal('API_KEY_EXPIRED');
    });

    it('an administrator updates a key in reach through the admin route', async () => {
      const k = await newKey(member, { scopes: ['sessions:read'] });
      const r = await d.api.patch(
        `/v1/admin/api-keys/${k.id}`,
        { scopes: ['sessions:read', 'agents:execute'], name: 'by root' },
        { token: tok(root) },
      );
      expect(r.status, r.text).to.equal(200);
      expect(r.body.api_key.scopes).to.deep.equal(['sessions:read', 'agents:execute']);
      expect((await me(k.key)).body.scopes).to.have.members(['sessions:read', 'agents:execute']);
    });
  });

  describe('roll', () => {
    it('with a grace period: the same id, both secrets work, the old one stops when the grace ends', async () => {
      const k = await newKey(member, { name: 'ci', scopes: ['sessions:read'], rate_limit_per_hour: 321 });
      expect((await me(k.key)).status).to.equal(200);
      const at = clock.now();
      const r = await d.api.post(`/v1/api-keys/${k.id}/roll`, { grace_seconds: 3600 }, { token: tok(member) });
      expect(r.status, r.text).to.equal(200);
      expect(r.body.key)
        .to.match(/^ak_live_/)
        .and.not.equal(k.key);
      expect(r.body.previous_expires_at).to.equal(new Date(at + HOUR).toISOString());
      expect(r.body.api_key).to.include({
        id: k.id,
        name: 'ci',
        rate_limit_per_hour: 321,
        rolled_at: new Date(at).toISOString(),
        previous_expires_at: new Date(at + HOUR).toISOString(),
      });
      expect(r.body.api_key.prefix).to.equal(r.body.key.slice(0, 12));
      for (const key of [k.key, r.body.key]) {
        const res = await me(key);
        expect(res.status).to.equal(200);
        expect(res.body.api_key_id).to.equal(k.id);
        expect(res.body.scopes).to.deep.equal(['sessions:read']);
      }
      clock.advance(HOUR - 1000);
      expect((await me(k.key)).status, 'one second before the end').to.equal(200);
      clock.advance(1000);
      const old = await me(k.key);
      expect(old.status).to.equal(401);
      expect(old.body.error.code).to.equal('INVALID_TOKEN');
      expect((await me(r.body.key)).status).to.equal(200);
      const listed = (await d.api.get('/v1/api-keys', { token: tok(member) })).body.api_keys.find(
        (x: { id: string }) => x.id === k.id,
      );
      expect(listed).to.include({
        previous_expires_at: null,
        rolled_at: new Date(at).toISOString(),
        prefix: r.body.key.slice(0, 12),
      });
    });

    it('the default grace is 24 hours; more than 30 days or a negative one is 400', async () => {
      const k = await newKey(member);
      const at = clock.now();
      const r = await d.api.request('POST', `/v1/api-keys/${k.id}/roll`, { token: tok(member) });
      expect(r.status, r.text).to.equal(200);
      expect(r.body.previous_expires_at).to.equal(new Date(at + 24 * HOUR).toISOString());
      for (const grace_seconds of [30 * 86_400 + 1, -1, 1.5, '60']) {
        const bad = await d.api.post(`/v1/api-keys/${k.id}/roll`, { grace_seconds }, { token: tok(member) });
        expect(bad.status, String(grace_seconds)).to.equal(400);
        expect(bad.body.error.code).to.equal('INVALID_FIELD');
      }
      expect((await d.api.post(`/v1/api-keys/${k.id}/roll`, { grace: 5 }, { token: tok(member) })).status).to.equal(
        400,
      );
      expect((await me(r.body.key)).status, 'refused rolls changed nothing').to.equal(200);
      expect((await me(k.key)).status).to.equal(200);
    });

    it('rolling twice: the secret from before the first roll stops at once; the two newer ones work', async () => {
      const k = await newKey(member);
      const first = await d.api.post(`/v1/api-keys/${k.id}/roll`, { grace_seconds: 3600 }, { token: tok(member) });
      expect((await me(k.key)).status).to.equal(200);
      const second = await d.api.post(`/v1/api-keys/${k.id}/roll`, { grace_seconds: 3600 }, { token: tok(member) });
      expect(second.status, second.text).to.equal(200);
      for (let i = 0; i < 2; i++) {
        const s0 = await me(k.key);
        expect(s0.status).to.equal(401);
        expect(s0.body.error.code).to.equal('INVALID_TOKEN');
      }
      expect((await me(first.body.key)).status).to.equal(200);
      expect((await me(second.body.key)).status).to.equal(200);
    });

    it('an administrator rolls a key in reach; per-key state (last_used_at) carries over', async () => {
      const k = await newKey(memberA);
      expect((await me(k.key)).status).to.equal(200);
      const before = (
        await d.api.get(`/v1/admin/api-keys?user_id=${memberA.user.id}`, { token: tok(adminA) })
      ).body.api_keys.find((x: { id: string }) => x.id === k.id);
      expect(before.last_used_at).to.be.a('string');
      const r = await d.api.post(`/v1/admin/api-keys/${k.id}/roll`, { grace_seconds: 0 }, { token: tok(adminA) });
      expect(r.status, r.text).to.equal(200);
      expect(r.body.api_key.last_used_at).to.equal(before.last_used_at);
      expect((await me(k.key)).status).to.equal(401);
      clock.advance(120_000);
      expect((await me(r.body.key)).status).to.equal(200);
      const after = (
        await d.api.get(`/v1/admin/api-keys?user_id=${memberA.user.id}`, { token: tok(adminA) })
      ).body.api_keys.find((x: { id: string }) => x.id === k.id);
      expect(after.last_used_at).to.equal(new Date(clock.now()).toISOString());
    });
  });

  it('update and roll are audited with the fields changed, never a secret or its hash', async () => {
    const k = await newKey(member, { scopes: ['sessions:read', 'credits:read'] });
    await d.api.patch(`/v1/api-keys/${k.id}`, { name: 'audited', scopes: ['sessions:read'] }, { token: tok(member) });
    const r1 = await d.api.post(`/v1/api-keys/${k.id}/roll`, { grace_seconds: 60 }, { token: tok(member) });
    const r2 = await d.api.post(`/v1/admin/api-keys/${k.id}/roll`, { grace_seconds: 0 }, { token: tok(root) });
    const rows = (await auditRows(d)).filter((row) => row.target_id === k.id);
    const update = rows.find((row) => row.action === 'key.update')!;
    expect(update).to.include({
      outcome: 'success',
      actor_type: 'user',
      actor_id: member.user.id,
      target_type: 'api_key',
    });
    expect(JSON.parse(update.details)).to.deep.include({
      owner_id: member.user.id,
      fields: ['name', 'scopes'],
      scopes: ['sessions:read'],
    });
    const rolls = rows.filter((row) => row.action === 'key.roll');
    expect(rolls.map((row) => [row.actor_type, JSON.parse(row.details).grace_seconds])).to.deep.equal([
      ['user', 60],
      ['admin', 0],
    ]);
    const text = JSON.stringify(rows);
    for (const secret of [k.key, r1.body.key, r2.body.key]) {
      expect(text).not.to.include(secret);
      expect(text).not.to.include(hashSecret(secret));
      expect(text).not.to.include(secret.slice(12));
    }
  });

  it('lists show last_used_at (GET /v1/api-keys and the admin list)', async () => {
    const k = await newKey(member);
    const fresh = (await d.api.get('/v1/api-keys', { token: tok(member) })).body.api_keys.find(
      (x: { id: string }) => x.id === k.id,
    );
    expect(fresh).to.have.property('last_used_at', null);
    await me(k.key);
    const used = (
      await d.api.get(`/v1/admin/api-keys?user_id=${member.user.id}`, { token: tok(root) })
    ).body.api_keys.find((x: { id: string }) => x.id === k.id);
    expect(used.last_used_at).to.equal(new Date(clock.now()).toISOString());
  });
});
