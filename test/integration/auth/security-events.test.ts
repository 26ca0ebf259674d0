import { expect } from 'chai';
import { totpNow } from '../../../daemon/auth/totp.js';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { auditRows, buildApiKey, buildUser, type TestUser } from '../../helpers/factories.js';
import { closeClients, connect } from '../stream/support.js';

interface Tokens {
  access_token: string;
  refresh_token: string;
}

const claimsOf = (token: string) =>
  JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;

/**
 * Security events cut access at once: a revoked sign-in (refresh-token reuse,
 * logout) takes its access tokens with it, enabling MFA ends the other
 * sign-ins, and logout-all / a password change say which API keys are still
 * live and can revoke them.
 */
describeStorage('security events cut access', (backend) => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon({ backend, logLevel: 'error' });
    d.container.stream.tune({ recheckIntervalMs: 200 });
  });
  afterEach(() => closeClients());
  after(async () => d?.stop());

  const signIn = async (u: TestUser, mfaToken?: string): Promise<Tokens> => {
    const r = await d.api.post('/v1/auth/login', {
      email: u.email,
      password: u.password,
      ...(mfaToken ? { mfa_token: mfaToken } : {}),
    });
    expect(r.status, r.text).to.equal(200);
    return r.body.tokens;
  };
  const me = (token: string) => d.api.get('/v1/me', { token });
  /** Several requests, so every kept row (verified token, user, sign-in) is warm. */
  const warm = async (...tokens: string[]) => {
    for (let i = 0; i < 3; i++) for (const t of tokens) expect((await me(t)).status).to.equal(200);
  };
  const expectRefused = async (token: string, code = 'INVALID_TOKEN') => {
    const r = await me(token);
    expect(r.status, r.text).to.equal(401);
    expect(r.body.error.code).to.equal(code);
  };

  describe('a revoked sign-in takes its access tokens with it', () => {
    it('names the sign-in in the access token (sid), the same across refreshes, another for each sign-in', async () => {
      const u = await buildUser(d, { withPassword: true });
      const a = await signIn(u);
      const b = await signIn(u);
      const a2 = (await d.api.post('/v1/auth/refresh', { refresh_token: a.refresh_token })).body.tokens as Tokens;
      const sid = claimsOf(a.access_token).sid;
      expect(sid).to.be.a('string').and.match(/^rtk_/);
      expect(claimsOf(a2.access_token).sid).to.equal(sid);
      expect(claimsOf(b.access_token).sid).to.be.a('string').and.not.equal(sid);
    });

    it('refresh-token reuse: every access token of that sign-in answers 401 INVALID_TOKEN at once; another sign-in keeps working', async () => {
      const u = await buildUser(d, { withPassword: true });
      const a = await signIn(u);
      const other = await signIn(u);
      const a2 = (await d.api.post('/v1/auth/refresh', { refresh_token: a.refresh_token })).body.tokens as Tokens;
      await warm(a.access_token, a2.access_token, other.access_token);
      // The first refresh token, stolen and replayed: the whole sign-in is revoked.
      const reuse = await d.api.post('/v1/auth/refresh', { refresh_token: a.refresh_token });
      expect(reuse.body.error.code).to.equal('REFRESH_TOKEN_REUSED');
      await expectRefused(a.access_token);
      await expectRefused(a2.access_token);
      expect((await me(other.access_token)).status).to.equal(200);
      expect((await d.api.post('/v1/auth/refresh', { refresh_token: other.refresh_token })).status).to.equal(200);
    });

    it('logout: the sign-in’s access tokens answer 401 INVALID_TOKEN at once; another sign-in keeps working', async () => {
      const u = await buildUser(d, { withPassword: true });
      const a = await signIn(u);
      const b = await signIn(u);
      await warm(a.access_token, b.access_token);
      expect(
        (await d.api.post('/v1/auth/logout', { refresh_token: a.refresh_token }, { token: a.access_token })).status,
      ).to.equal(200);
      await expectRefused(a.access_token);
      expect((await me(b.access_token)).status).to.equal(200);
      // Logging out one sign-in from another works the same way.
      const c = await signIn(u);
      await warm(c.access_token);
      expect(
        (await d.api.post('/v1/auth/logout', { refresh_token: c.refresh_token }, { token: b.access_token })).status,
      ).to.equal(200);
      await expectRefused(c.access_token);
      expect((await me(b.access_token)).status).to.equal(200);
    });

    it('logout racing a refresh of the same sign-in leaves nothing of it usable', async () => {
      const u = await buildUser(d, { withPassword: true });
      for (let i = 0; i < 5; i++) {
        const a = await signIn(u);
        const [out, refreshed] = await Promise.all([
          d.api.post('/v1/auth/logout', { refresh_token: a.refresh_token }, { token: a.access_token }),
          d.api.post('/v1/auth/refresh', { refresh_token: a.refresh_token }),
        ]);
        expect(out.status, out.text).to.equal(200);
        await expectRefused(a.access_token);
        if (refreshed.status === 200) {
          await expectRefused(refreshed.body.tokens.access_token);
          expect(
            (await d.api.post('/v1/auth/refresh', { refresh_token: refreshed.body.tokens.refresh_token })).status,
          ).to.equal(401);
        }
      }
    });

    it('closes the stream connections of a signed-out sign-in, and only those', async () => {
      const u = await buildUser(d, { withPassword: true });
      const a = await signIn(u);
      const b = await signIn(u);
      const mine = await connect(d, { token: a.access_token });
      const kept = await connect(d, { token: b.access_token });
      expect(
        (await d.api.post('/v1/auth/logout', { refresh_token: a.refresh_token }, { token: a.access_token })).status,
      ).to.equal(200);
      expect(await mine.closedWithin(10_000)).to.deep.equal({ code: 1008, reason: 'INVALID_TOKEN' });
      await new Promise((res) => setTimeout(res, 500));
      expect(kept.ws.readyState).to.equal(kept.ws.OPEN);
    });

    it('still accepts an access token without sid (issued before sign-in ids) until it expires', async () => {
      const u = await buildUser(d);
      expect(claimsOf(u.token).sid).to.equal(undefined);
      expect((await me(u.token)).status).to.equal(200);
    });
  });

  describe('enabling MFA ends the other sign-ins', () => {
    async function enrol(token: string): Promise<{ secret: string; body: Record<string, unknown> }> {
      const setup = await d.api.post('/v1/auth/mfa/setup', {}, { token });
      expect(setup.status, setup.text).to.equal(200);
      const enable = await d.api.post(
        '/v1/auth/mfa/enable',
        { token: totpNow(setup.body.secret, Date.now()) },
        { token },
      );
      expect(enable.status, enable.text).to.equal(200);
      return { secret: setup.body.secret, body: enable.body };
    }

    it('revokes every refresh token but the caller’s sign-in; their access tokens stop at once', async () => {
      const u = await buildUser(d, { withPassword: true });
      const caller = await signIn(u);
      const stolen = await signIn(u);
      const older = await signIn(u);
      await warm(caller.access_token, stolen.access_token);
      const { body } = await enrol(caller.access_token);
      // The stolen refresh token no longer gets past the second factor.
      const r = await d.api.post('/v1/auth/refresh', { refresh_token: stolen.refresh_token });
      expect(r.status, r.text).to.equal(401);
      expect(r.body.error.code).to.equal('INVALID_TOKEN');
      expect((await d.api.post('/v1/auth/refresh', { refresh_token: older.refresh_token })).status).to.equal(401);
      await expectRefused(stolen.access_token);
      expect(body).to.include({ sign_in_again: false, revoked_sign_ins: 2 });
      // The caller's own sign-in goes on.
      expect((await me(caller.access_token)).status).to.equal(200);
      const next = await d.api.post('/v1/auth/refresh', { refresh_token: caller.refresh_token });
      expect(next.status, next.text).to.equal(200);
      const audit = (await auditRows(d)).filter(
        (row) => row.action === 'auth.mfa_enable' && row.outcome === 'success' && row.target_id === u.user.id,
      );
      expect(audit).to.have.length(1);
      expect(JSON.parse(String(audit[0]!.details))).to.deep.include({
        revoked_sign_ins: 2,
        kept_sign_in: claimsOf(caller.access_token).sid,
      });
    });

    it('leaves no other sign-in usable when refreshes race the enrolment', async () => {
      const u = await buildUser(d, { withPassword: true });
      const caller = await signIn(u);
      const others: Tokens[] = [];
      for (let i = 0; i < 6; i++) others.push(await signIn(u));
      const setup = await d.api.post('/v1/auth/mfa/setup', {}, { token: caller.access_token });
      const [enable, ...refreshed] = await Promise.all([
        d.api.post(
          '/v1/auth/mfa/enable',
          { token: totpNow(setup.body.secret, Date.now()) },
          { token: caller.access_token },
        ),
        ...others.map((t) => d.api.post('/v1/auth/refresh', { refresh_token: t.refresh_token })),
      ]);
      expect(enable!.status, enable!.text).to.equal(200);
      // Whatever won each race, what a refresh handed out is dead now.
      for (const r of refreshed.filter((x) => x.status === 200)) {
        await expectRefused(r.body.tokens.access_token);
        expect((await d.api.post('/v1/auth/refresh', { refresh_token: r.body.tokens.refresh_token })).status).to.equal(
          401,
        );
      }
      for (const t of others) await expectRefused(t.access_token);
      expect((await me(caller.access_token)).status).to.equal(200);
    });

    it('revokes every refresh token when the caller’s sign-in cannot be told (a token without sid), and says to sign in again', async () => {
      const u = await buildUser(d, { withPassword: true });
      const signedIn = await signIn(u);
      const { body, secret } = await enrol(u.token);
      expect((await d.api.post('/v1/auth/refresh', { refresh_token: signedIn.refresh_token })).status).to.equal(401);
      await expectRefused(signedIn.access_token);
      expect(body).to.include({ sign_in_again: true, revoked_sign_ins: 1 });
      // Signing in again needs the second factor.
      expect((await d.api.post('/v1/auth/login', { email: u.email, password: u.password })).body.error.code).to.equal(
        'MFA_REQUIRED',
      );
      await signIn(u, totpNow(secret, Date.now() + 30_000));
    });
  });

  describe('logout-all and password change list the live API keys, and can revoke them', () => {
    async function keysOf(u: TestUser) {
      const live = await buildApiKey(d, u, { name: 'ci deploy', scopes: ['credits:read'] });
      const second = await buildApiKey(d, u, {
        name: 'laptop',
        expires_at: new Date(Date.now() + 86_400_000).toISOString(),
      });
      const revoked = await buildApiKey(d, u, { name: 'old' });
      expect((await d.api.delete(`/v1/api-keys/${revoked.id}`, { token: u.token })).status).to.equal(200);
      // Used once, so last_used_at is set.
      expect((await d.api.get('/v1/me', { apiKey: live.key })).status).to.equal(200);
      return { live, second, revoked };
    }

    it('logout-all lists the keys still live (never the secret) and leaves them working', async () => {
      const u = await buildUser(d, { withPassword: true });
      const { live, second } = await keysOf(u);
      const t = await signIn(u);
      const r = await d.api.post('/v1/auth/logout-all', {}, { token: t.access_token });
      expect(r.status, r.text).to.equal(200);
      expect(r.body.api_keys.map((k: { id: string }) => k.id).sort()).to.deep.equal([live.id, second.id].sort());
      const listed = r.body.api_keys.find((k: { id: string }) => k.id === live.id);
      expect(listed).to.include({ name: 'ci deploy', status: 'active' });
      expect(listed.prefix).to.equal(live.key.slice(0, 12));
      expect(listed.scopes).to.deep.equal(['credits:read']);
      expect(listed.last_used_at).to.be.a('string');
      expect(r.body.api_keys.find((k: { id: string }) => k.id === second.id).expires_at).to.be.a('string');
      expect(r.body.revoked_api_keys).to.deep.equal([]);
      expect(r.text).not.to.include(live.key).and.not.to.include(second.key);
      expect((await d.api.get('/v1/me', { apiKey: live.key })).status).to.equal(200);
      // A body is optional, as before.
      const t2 = await signIn(u);
      const bare = await d.api.request('POST', '/v1/auth/logout-all', { token: t2.access_token });
      expect(bare.status, bare.text).to.equal(200);
      expect(bare.body.api_keys).to.have.length(2);
    });

    it('logout-all with revoke_api_keys revokes them in the same call: they answer 401 API_KEY_REVOKED', async () => {
      const u = await buildUser(d, { withPassword: true });
      const { live, second, revoked } = await keysOf(u);
      const bystander = await buildUser(d);
      const theirs = await buildApiKey(d, bystander);
      const t = await signIn(u);
      const r = await d.api.post('/v1/auth/logout-all', { revoke_api_keys: true }, { token: t.access_token });
      expect(r.status, r.text).to.equal(200);
      expect(r.body.api_keys).to.deep.equal([]);
      expect(r.body.revoked_api_keys.map((k: { id: string }) => k.id).sort()).to.deep.equal(
        [live.id, second.id].sort(),
      );
      expect(r.body.revoked_api_keys.every((k: { status: string }) => k.status === 'revoked')).to.equal(true);
      for (const k of [live, second, revoked]) {
        const res = await d.api.get('/v1/me', { apiKey: k.key });
        expect(res.status).to.equal(401);
        expect(res.body.error.code).to.equal('API_KEY_REVOKED');
      }
      await expectRefused(t.access_token);
      expect((await d.api.get('/v1/me', { apiKey: theirs.key })).status).to.equal(200);
      const audit = await auditRows(d);
      const revokes = audit.filter(
        (row) => row.action === 'key.revoke' && [live.id, second.id].includes(String(row.target_id)),
      );
      expect(revokes).to.have.length(2);
      expect(JSON.parse(String(revokes[0]!.details))).to.include({ owner_id: u.user.id, reason: 'logout_all' });
      const logoutAll = audit.filter((row) => row.action === 'auth.logout_all' && row.target_id === u.user.id);
      expect(JSON.parse(String(logoutAll.at(-1)!.details))).to.include({ keys_revoked: 2, keys_live: 0 });
    });

    it('a password change lists the live keys, and revokes them with revoke_api_keys', async () => {
      const u = await buildUser(d, { withPassword: true });
      const { live, second } = await keysOf(u);
      const t = await signIn(u);
      const listed = await d.api.post(
        '/v1/auth/password',
        { current_password: u.password, new_password: 'a-new-password-123' },
        { token: t.access_token },
      );
      expect(listed.status, listed.text).to.equal(200);
      expect(listed.body.api_keys.map((k: { id: string }) => k.id).sort()).to.deep.equal([live.id, second.id].sort());
      expect(listed.body.revoked_api_keys).to.deep.equal([]);
      expect((await d.api.get('/v1/me', { apiKey: live.key })).status).to.equal(200);

      const t2 = await signIn({ ...u, password: 'a-new-password-123' });
      const r = await d.api.post(
        '/v1/auth/password',
        { current_password: 'a-new-password-123', new_password: 'a-third-password-456', revoke_api_keys: true },
        { token: t2.access_token },
      );
      expect(r.status, r.text).to.equal(200);
      expect(r.body.api_keys).to.deep.equal([]);
      expect(r.body.revoked_api_keys.map((k: { id: string }) => k.id).sort()).to.deep.equal(
        [live.id, second.id].sort(),
      );
      for (const k of [live, second])
        expect((await d.api.get('/v1/me', { apiKey: k.key })).body.error.code).to.equal('API_KEY_REVOKED');
      const revokes = (await auditRows(d)).filter((row) => row.action === 'key.revoke' && row.target_id === live.id);
      expect(JSON.parse(String(revokes.at(-1)!.details))).to.include({ reason: 'password_change' });
    });

    it('a wrong current password revokes nothing', async () => {
      const u = await buildUser(d, { withPassword: true });
      const k = await buildApiKey(d, u);
      const t = await signIn(u);
      const r = await d.api.post(
        '/v1/auth/password',
        { current_password: 'wrong-password-xx', new_password: 'a-new-password-123', revoke_api_keys: true },
        { token: t.access_token },
      );
      expect(r.status).to.equal(401);
      expect((await d.api.get('/v1/me', { apiKey: k.key })).status).to.equal(200);
    });
  });
});
