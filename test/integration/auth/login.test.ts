import { expect } from 'chai';
import { totpNow } from '../../../daemon/auth/totp.js';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { auditActions as actions, buildUser, uniqueEmail } from '../../helpers/factories.js';

describeStorage('authentication: login, tokens, MFA', (backend) => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon({ backend });
  });
  after(async () => d?.stop());

  it('logs in with email and password and returns the documented shape (docs/API.md)', async () => {
    const u = await buildUser(d, { withPassword: true });
    const r = await d.api.post('/v1/auth/login', { email: u.email, password: u.password });
    expect(r.status, r.text).to.equal(200);
    expect(r.body.success).to.equal(true);
    expect(r.body.tokens).to.include({ expires_in: 900, token_type: 'Bearer' });
    expect(r.body.tokens.refresh_token).to.match(/^rt_/);
    expect(r.body.user).to.include({ id: u.user.id, email: u.email, mfa_enabled: false });
    expect(r.text).not.to.match(/password_hash|argon2|mfa_secret/);
    const me = await d.api.get('/v1/me', { token: r.body.tokens.access_token });
    expect(me.status).to.equal(200);
    expect(me.body.user.id).to.equal(u.user.id);
    expect(me.body.auth).to.equal('jwt');
    expect(me.body.scopes).to.include('agents:execute').and.not.include('admin');
    expect(await actions(d)).to.include('auth.login:success');
  });

  it('puts sub, iat, exp (15 min), jti, iss, aud, scopes, tier and typ at+jwt in the access token', async () => {
    const u = await buildUser(d, { withPassword: true, tier: 'team' });
    const r = await d.api.post('/v1/auth/login', { email: u.email, password: u.password });
    const [h, p] = r.body.tokens.access_token
      .split('.')
      .slice(0, 2)
      .map((s: string) => JSON.parse(Buffer.from(s, 'base64url').toString()));
    expect(h).to.include({ alg: 'HS256', typ: 'at+jwt' });
    expect(p).to.include({ sub: u.user.id, iss: 'keen-gateway', aud: 'keen-api', tier: 'team' });
    expect(p.exp - p.iat).to.equal(900);
    expect(p.jti).to.be.a('string');
    expect(p.scopes).to.be.an('array');
  });

  it('answers an unknown email and a wrong password with the same 401', async () => {
    const u = await buildUser(d, { withPassword: true });
    const wrong = await d.api.post('/v1/auth/login', { email: u.email, password: 'not-the-password-123' });
    const unknown = await d.api.post('/v1/auth/login', {
      email: uniqueEmail('ghost'),
      password: 'not-the-password-123',
    });
    for (const r of [wrong, unknown]) {
      expect(r.status).to.equal(401);
      expect(r.body.error).to.deep.include({
        type: 'AUTHENTICATION_ERROR',
        code: 'INVALID_CREDENTIALS',
        message: 'email or password is incorrect',
      });
    }
    expect((await actions(d)).filter((a) => a === 'auth.login_failed:failure').length).to.be.at.least(2);
  });

  it('normalizes email case and Unicode compatibility forms to one account', async () => {
    const u = await buildUser(d, { withPassword: true, email: uniqueEmail('Case').replace('case', 'Case') });
    const upper = u.email.toUpperCase();
    expect((await d.api.post('/v1/auth/login', { email: `  ${upper} `, password: u.password })).status).to.equal(200);
    // Fullwidth letters fold to ASCII under NFKC.
    const fullwidth = u.email.replace(/^c/, '\uff43');
    expect((await d.api.post('/v1/auth/login', { email: fullwidth, password: u.password })).status).to.equal(200);
    const dup = await d.container.users.createUser(null, { email: upper }).catch((e) => e);
    expect(dup.code).to.equal('ALREADY_EXISTS');
  });

  it('rotates refresh tokens: the old one dies, the new one works', async () => {
    const u = await buildUser(d, { withPassword: true });
    const login = await d.api.post('/v1/auth/login', { email: u.email, password: u.password });
    const first = login.body.tokens.refresh_token;
    const r1 = await d.api.post('/v1/auth/refresh', { refresh_token: first });
    expect(r1.status, r1.text).to.equal(200);
    expect(r1.body.tokens.refresh_token).to.not.equal(first);
    expect((await d.api.get('/v1/me', { token: r1.body.tokens.access_token })).status).to.equal(200);
    const r2 = await d.api.post('/v1/auth/refresh', { refresh_token: r1.body.tokens.refresh_token });
    expect(r2.status).to.equal(200);
  });

  it('logout revokes the family; logout-all also kills access tokens issued so far', async () => {
    const u = await buildUser(d, { withPassword: true });
    const a = (await d.api.post('/v1/auth/login', { email: u.email, password: u.password })).body.tokens;
    const b = (await d.api.post('/v1/auth/login', { email: u.email, password: u.password })).body.tokens;
    expect(
      (await d.api.post('/v1/auth/logout', { refresh_token: a.refresh_token }, { token: a.access_token })).status,
    ).to.equal(200);
    expect((await d.api.post('/v1/auth/refresh', { refresh_token: a.refresh_token })).body.error.code).to.equal(
      'INVALID_TOKEN',
    );
    expect((await d.api.post('/v1/auth/refresh', { refresh_token: b.refresh_token })).status).to.equal(200);
    // Someone else's refresh token cannot be logged out by me.
    const other = await buildUser(d, { withPassword: true });
    const o = (await d.api.post('/v1/auth/login', { email: other.email, password: other.password })).body.tokens;
    expect(
      (await d.api.post('/v1/auth/logout', { refresh_token: o.refresh_token }, { token: b.access_token })).status,
    ).to.equal(401);
    expect((await d.api.post('/v1/auth/logout-all', {}, { token: b.access_token })).status).to.equal(200);
    expect((await d.api.get('/v1/me', { token: b.access_token })).body.error.code).to.equal('INVALID_TOKEN');
    const again = await d.api.post('/v1/auth/login', { email: u.email, password: u.password });
    expect((await d.api.get('/v1/me', { token: again.body.tokens.access_token })).status).to.equal(200);
  });

  it('a password change needs the current password and ends other sessions', async () => {
    const u = await buildUser(d, { withPassword: true });
    const t = (await d.api.post('/v1/auth/login', { email: u.email, password: u.password })).body.tokens;
    const bad = await d.api.post(
      '/v1/auth/password',
      { current_password: 'wrong-password-xx', new_password: 'a-new-password-123' },
      { token: t.access_token },
    );
    expect(bad.status).to.equal(401);
    const short = await d.api.post(
      '/v1/auth/password',
      { current_password: u.password, new_password: 'short' },
      { token: t.access_token },
    );
    expect(short.status).to.equal(400);
    expect(short.body.error.details[0].field).to.equal('new_password');
    const ok = await d.api.post(
      '/v1/auth/password',
      { current_password: u.password, new_password: 'a-new-password-123' },
      { token: t.access_token },
    );
    expect(ok.status).to.equal(200);
    expect((await d.api.get('/v1/me', { token: t.access_token })).status).to.equal(401);
    expect((await d.api.post('/v1/auth/refresh', { refresh_token: t.refresh_token })).status).to.equal(401);
    expect((await d.api.post('/v1/auth/login', { email: u.email, password: 'a-new-password-123' })).status).to.equal(
      200,
    );
  });

  it('enrols TOTP, requires it at login, refuses a replayed or wrong code, accepts each recovery code once, and disables', async () => {
    const u = await buildUser(d, { withPassword: true });
    const t = (await d.api.post('/v1/auth/login', { email: u.email, password: u.password })).body.tokens;
    const setup = await d.api.post('/v1/auth/mfa/setup', {}, { token: t.access_token });
    expect(setup.status).to.equal(200);
    expect(setup.body.secret).to.match(/^[A-Z2-7]+=*$/);
    const url = new URL(setup.body.otpauth_url);
    expect(url.protocol).to.equal('otpauth:');
    expect(url.host).to.equal('totp');
    expect(url.searchParams.get('secret')).to.equal(setup.body.secret);
    expect(url.searchParams.get('issuer')).to.equal('keen-gateway');
    const stored = await d.container.database.db
      .selectFrom('users')
      .select('mfa_secret_enc')
      .where('id', '=', u.user.id)
      .executeTakeFirstOrThrow();
    expect(stored.mfa_secret_enc).to.match(/^v1\./).and.not.include(setup.body.secret);

    expect(
      (await d.api.post('/v1/auth/mfa/enable', { token: '000000' }, { token: t.access_token })).body.error.code,
    ).to.equal('INVALID_MFA');
    const code = totpNow(setup.body.secret, Date.now());
    const enable = await d.api.post('/v1/auth/mfa/enable', { token: code }, { token: t.access_token });
    expect(enable.status, enable.text).to.equal(200);
    const codes: string[] = enable.body.recovery_codes;
    expect(codes).to.have.length(10);
    expect(new Set(codes).size).to.equal(10);

    const noCode = await d.api.post('/v1/auth/login', { email: u.email, password: u.password });
    expect(noCode.status).to.equal(401);
    expect(noCode.body.error.code).to.equal('MFA_REQUIRED');
    // The code used to enable is spent: the same time step is never accepted again.
    const replay = await d.api.post('/v1/auth/login', { email: u.email, password: u.password, mfa_token: code });
    expect(replay.body.error.code).to.equal('INVALID_MFA');
    const wrong = await d.api.post('/v1/auth/login', {
      email: u.email,
      password: u.password,
      mfa_token: '123456' === code ? '654321' : '123456',
    });
    expect(wrong.body.error.code).to.equal('INVALID_MFA');
    const rc = await d.api.post('/v1/auth/login', {
      email: u.email,
      password: u.password,
      mfa_token: codes[0]!.toUpperCase(),
    });
    expect(rc.status, rc.text).to.equal(200);
    expect(
      (await d.api.post('/v1/auth/login', { email: u.email, password: u.password, mfa_token: codes[0] })).body.error
        .code,
    ).to.equal('INVALID_MFA');
    const hashes = await d.container.database.db
      .selectFrom('recovery_codes')
      .select('code_hash')
      .where('user_id', '=', u.user.id)
      .execute();
    expect(hashes).to.have.length(10);
    expect(JSON.stringify(hashes)).not.to.include(codes[1]!);

    const dis = await d.api.post('/v1/auth/mfa/disable', { token: codes[1] }, { token: rc.body.tokens.access_token });
    expect(dis.status, dis.text).to.equal(200);
    expect((await d.api.post('/v1/auth/login', { email: u.email, password: u.password })).status).to.equal(200);
    expect(await actions(d)).to.include.members([
      'auth.mfa_setup:success',
      'auth.mfa_enable:success',
      'auth.mfa_recovery_used:success',
      'auth.mfa_disable:success',
    ]);
  });

  it('refuses MFA enable before setup, setup while MFA is on, and a second enable', async () => {
    const u = await buildUser(d, { withPassword: true });
    const token = (await d.api.post('/v1/auth/login', { email: u.email, password: u.password })).body.tokens
      .access_token;
    expect((await d.api.post('/v1/auth/mfa/enable', { token: '123456' }, { token })).body.error.code).to.equal(
      'INVALID_STATE',
    );
    expect((await d.api.post('/v1/auth/mfa/disable', { token: '123456' }, { token })).body.error.code).to.equal(
      'INVALID_STATE',
    );
    // Setup twice before enabling: the second secret replaces the first (an unfinished enrolment restarts).
    const first = (await d.api.post('/v1/auth/mfa/setup', {}, { token })).body.secret as string;
    const second = (await d.api.post('/v1/auth/mfa/setup', {}, { token })).body.secret as string;
    expect(second).to.not.equal(first);
    const enabled = await d.api.post('/v1/auth/mfa/enable', { token: totpNow(second, Date.now()) }, { token });
    expect(enabled.status, enabled.text).to.equal(200);
    // Enabling revoked the other sign-ins; this one goes on. While MFA is on, setup would swap the
    // secret under the user's feet (an attacker with a stolen session could lock the owner out): refused.
    const secretBefore = (
      await d.container.database.db
        .selectFrom('users')
        .select('mfa_secret_enc')
        .where('id', '=', u.user.id)
        .executeTakeFirstOrThrow()
    ).mfa_secret_enc;
    const again = await d.api.post('/v1/auth/mfa/setup', {}, { token });
    expect(again.status).to.equal(409);
    expect(again.body.error.code).to.equal('INVALID_STATE');
    const secretAfter = (
      await d.container.database.db
        .selectFrom('users')
        .select('mfa_secret_enc')
        .where('id', '=', u.user.id)
        .executeTakeFirstOrThrow()
    ).mfa_secret_enc;
    expect(secretAfter).to.equal(secretBefore);
    expect(
      (await d.api.post('/v1/auth/mfa/enable', { token: totpNow(second, Date.now() + 30_000) }, { token })).body.error
        .code,
    ).to.equal('INVALID_STATE');
  });

  it('refuses account endpoints to API keys', async () => {
    const u = await buildUser(d);
    const key = (await d.api.post('/v1/api-keys', { name: 'k' }, { token: u.token })).body.key;
    const r = await d.api.post('/v1/auth/mfa/setup', {}, { apiKey: key });
    expect(r.status).to.equal(403);
    expect(r.body.error.code).to.equal('FORBIDDEN');
  });
});
