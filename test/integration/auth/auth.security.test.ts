import { expect } from 'chai';
import { createHmac, generateKeyPairSync } from 'node:crypto';
import jwt from 'jsonwebtoken';
import sinon from 'sinon';
import { createLogger } from '../../../daemon/logger.js';
import { Database } from '../../../daemon/storage/database.js';
import { CredentialRepository } from '../../../daemon/storage/repos/credentials.js';
import { ManualClock } from '../../../daemon/clock.js';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildApiKey, buildUser, mintToken, uniqueEmail } from '../../helpers/factories.js';

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

describeStorage('authentication attacks', (backend) => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon({
      backend,
      config: {
        auth: { login_throttle: { max_failures_per_email: 5, max_failures_per_ip: 1000, window_seconds: 900 } },
      },
    });
  });
  after(async () => d?.stop());

  async function meWith(token: string) {
    return d.api.get('/v1/me', { token });
  }

  it('refuses a missing header, another scheme and an empty credential', async () => {
    expect((await d.api.get('/v1/me')).body.error.code).to.equal('MISSING_TOKEN');
    for (const h of ['Basic dXNlcjpwYXNz', 'Bearer', 'bearer abc', 'ApiKey', 'Token x']) {
      const r = await d.api.get('/v1/me', { headers: { authorization: h } });
      expect(r.status, h).to.equal(401);
      expect(r.body.error.code, h).to.equal('INVALID_TOKEN_FORMAT');
    }
  });

  it('refuses alg:none, another secret, an RS256/HS256 confusion and a tampered payload', async () => {
    const u = await buildUser(d);
    const [h, p, s] = u.token.split('.');
    const payload = JSON.parse(Buffer.from(p!, 'base64url').toString());
    const none = `${b64({ alg: 'none', typ: 'at+jwt' })}.${p}.`;
    const otherSecret = jwt.sign(payload, 'another-secret-of-sufficient-length!!', {
      algorithm: 'HS256',
      header: { alg: 'HS256', typ: 'at+jwt' },
    });
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const rs256 = jwt.sign(payload, privateKey, { algorithm: 'RS256', header: { alg: 'RS256', typ: 'at+jwt' } });
    // HS256 signed with the RSA public key as the HMAC secret: the classic confusion.
    const pem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
    const hp = `${b64({ alg: 'HS256', typ: 'at+jwt' })}.${p}`;
    const confused = `${hp}.${createHmac('sha256', pem).update(hp).digest('base64url')}`;
    const tampered = `${h}.${b64({ ...payload, role: 'platform_admin', scopes: ['admin'] })}.${s}`;
    for (const t of [none, otherSecret, rs256, confused, tampered, 'not.a.jwt', u.token + 'x']) {
      const r = await meWith(t);
      expect(r.status).to.equal(401);
      expect(r.body.error.code).to.equal('INVALID_TOKEN');
    }
    expect((await meWith(u.token)).status).to.equal(200);
  });

  it('refuses tokens missing exp, iat or the at+jwt type, signed with the real secret', async () => {
    const u = await buildUser(d);
    const key = d.container.jwtSecret;
    const good = JSON.parse(Buffer.from(u.token.split('.')[1]!, 'base64url').toString());
    const without = (k: string) => Object.fromEntries(Object.entries(good).filter(([name]) => name !== k));
    const variants = [
      jwt.sign(without('exp'), key, { algorithm: 'HS256', header: { alg: 'HS256', typ: 'at+jwt' } }),
      jwt.sign(without('iat'), key, { algorithm: 'HS256', header: { alg: 'HS256', typ: 'at+jwt' }, noTimestamp: true }),
      jwt.sign(without('jti'), key, { algorithm: 'HS256', header: { alg: 'HS256', typ: 'at+jwt' } }),
      jwt.sign(good, key, { algorithm: 'HS256', header: { alg: 'HS256', typ: 'JWT' } }),
      jwt.sign({ ...good, aud: 'someone-else' }, key, { algorithm: 'HS256', header: { alg: 'HS256', typ: 'at+jwt' } }),
      jwt.sign({ ...good, iss: 'evil' }, key, { algorithm: 'HS256', header: { alg: 'HS256', typ: 'at+jwt' } }),
    ];
    for (const t of variants) expect((await meWith(t)).body.error?.code).to.equal('INVALID_TOKEN');
  });

  it('never lets a refresh token pass as an access token, nor the reverse', async () => {
    const u = await buildUser(d, { withPassword: true });
    const t = (await d.api.post('/v1/auth/login', { email: u.email, password: u.password })).body.tokens;
    expect((await meWith(t.refresh_token)).body.error.code).to.equal('INVALID_TOKEN');
    const asRefresh = await d.api.post('/v1/auth/refresh', { refresh_token: t.access_token });
    expect(asRefresh.status).to.be.oneOf([400, 401]);
    expect(asRefresh.body.error.code).to.be.oneOf(['INVALID_FIELD', 'INVALID_TOKEN']);
    const shortJwt = await d.api.post('/v1/auth/refresh', { refresh_token: 'rt_' + 'a'.repeat(43) });
    expect(shortJwt.body.error.code).to.equal('INVALID_TOKEN');
  });

  it('stops a suspended or deleted user at once', async () => {
    const u = await buildUser(d);
    expect((await meWith(u.token)).status).to.equal(200);
    await d.container.database.db
      .updateTable('users')
      .set({ status: 'suspended' })
      .where('id', '=', u.user.id)
      .execute();
    const r = await meWith(u.token);
    expect(r.status).to.equal(401);
    expect(r.body.error.code).to.equal('ACCOUNT_SUSPENDED');
    const v = await buildUser(d);
    await d.container.database.db.deleteFrom('users').where('id', '=', v.user.id).execute();
    expect((await meWith(v.token)).body.error.code).to.equal('INVALID_TOKEN');
  });

  it('revokes the whole family when a refresh token is used twice', async () => {
    const u = await buildUser(d, { withPassword: true });
    const t = (await d.api.post('/v1/auth/login', { email: u.email, password: u.password })).body.tokens;
    const next = (await d.api.post('/v1/auth/refresh', { refresh_token: t.refresh_token })).body.tokens;
    const reuse = await d.api.post('/v1/auth/refresh', { refresh_token: t.refresh_token });
    expect(reuse.status).to.equal(401);
    expect(reuse.body.error.code).to.equal('REFRESH_TOKEN_REUSED');
    // The legitimate-looking successor is dead too: the family is revoked.
    expect((await d.api.post('/v1/auth/refresh', { refresh_token: next.refresh_token })).status).to.equal(401);
  });

  it('lets exactly one of 8 racing refreshes with one token win, even when all of them read it as active', async () => {
    const u = await buildUser(d, { withPassword: true });
    const t = (await d.api.post('/v1/auth/login', { email: u.email, password: u.password })).body.tokens;
    // A barrier after the read: every request sees the token active before any of them uses it, so
    // only the compare-and-set that marks it used can keep a second one from winning.
    const RACERS = 8;
    const original = CredentialRepository.prototype.findRefreshToken;
    let arrived = 0;
    let release!: () => void;
    const allRead = new Promise<void>((resolve) => (release = resolve));
    const gate = sinon.stub(CredentialRepository.prototype, 'findRefreshToken').callsFake(async function (
      this: CredentialRepository,
      hash: string,
    ) {
      const row = await original.call(this, hash);
      if (++arrived === RACERS) release();
      await Promise.race([allRead, new Promise((r) => setTimeout(r, 5_000))]);
      return row;
    });
    try {
      const results = await Promise.all(
        Array.from({ length: RACERS }, () => d.api.post('/v1/auth/refresh', { refresh_token: t.refresh_token })),
      );
      expect(arrived).to.equal(RACERS);
      expect(results.filter((r) => r.status === 200)).to.have.length(1);
      const refused = results.filter((r) => r.status !== 200);
      expect(refused).to.have.length(RACERS - 1);
      for (const r of refused) {
        expect(r.status).to.equal(401);
        expect(r.body.error.code).to.equal('REFRESH_TOKEN_REUSED');
      }
    } finally {
      gate.restore();
    }
  });

  it('throttles a brute force of 50 passwords from one address for the whole window, whatever X-Forwarded-For says', async () => {
    const u = await buildUser(d, { withPassword: true });
    const statuses: number[] = [];
    const retryAfter: number[] = [];
    for (let i = 0; i < 50; i++) {
      // No trusted proxy: the header is ignored, every guess comes from the same address.
      const r = await d.api.post(
        '/v1/auth/login',
        { email: u.email, password: `guess-number-${i}` },
        { headers: { 'x-forwarded-for': `10.9.${i}.1` } },
      );
      statuses.push(r.status);
      if (r.status === 429) {
        expect(r.body.error.code).to.equal('LOGIN_THROTTLED');
        retryAfter.push(Number(r.headers.get('retry-after')));
      }
    }
    expect(statuses.slice(0, 5).every((s) => s === 401)).to.equal(true);
    expect(statuses.slice(5).every((s) => s === 429)).to.equal(true);
    // The address waits out the window (900 s, rounded up to a sub-bucket); guesses while throttled take nothing and add no wait.
    expect(retryAfter[0]!).to.be.within(890, 916);
    expect(retryAfter[retryAfter.length - 1]!).to.be.at.most(retryAfter[0]!);
    // Even the right password is throttled now; an unknown email is throttled the same way.
    expect((await d.api.post('/v1/auth/login', { email: u.email, password: u.password })).status).to.equal(429);
  });

  it('counts a wrong or missing TOTP toward the throttle', async () => {
    const u = await buildUser(d, { withPassword: true });
    await d.container.database.db
      .updateTable('users')
      .set({ mfa_enabled: 1, mfa_secret_enc: null })
      .where('id', '=', u.user.id)
      .execute();
    for (let i = 0; i < 5; i++) {
      const r = await d.api.post('/v1/auth/login', {
        email: u.email,
        password: u.password,
        ...(i % 2 ? { mfa_token: '111111' } : {}),
      });
      expect(r.status).to.equal(401);
    }
    expect(
      (await d.api.post('/v1/auth/login', { email: u.email, password: u.password, mfa_token: '222222' })).status,
    ).to.equal(429);
  });

  it('refuses an over-long password before hashing, and SQL or control characters in fields', async () => {
    const r = await d.api.post('/v1/auth/login', { email: uniqueEmail(), password: 'x'.repeat(1_000_000) });
    expect(r.status).to.equal(400);
    expect(r.body.error.code).to.equal('INVALID_FIELD');
    const p = await d.api.post('/v1/auth/login', { email: uniqueEmail(), password: 'é'.repeat(600) });
    expect(p.status).to.equal(400);
    const sqli = await d.api.post('/v1/auth/login', {
      email: "x'or'1'='1@x.com",
      password: "' OR 1=1; DROP TABLE users; --",
    });
    expect(sqli.status).to.equal(401);
    const spaced = await d.api.post('/v1/auth/login', { email: "a' OR '1'='1@x.com", password: 'whatever-password' });
    expect(spaced.status).to.equal(400);
    const ctrl = await d.api.post('/v1/auth/login', { email: 'a\u0000b@x.com', password: 'whatever-password' });
    expect(ctrl.status).to.equal(400);
    const extra = await d.api.post('/v1/auth/login', { email: 'a@x.com', password: 'whatever-password', admin: true });
    expect(extra.status).to.equal(400);
    expect(extra.body.error.details).to.deep.include({ field: 'admin', message: 'unknown field' });
    expect((await d.container.database.db.selectFrom('users').select('id').execute()).length).to.be.greaterThan(0);
  });

  it('rejects an API key with one character changed without reading the database', async () => {
    const u = await buildUser(d);
    const { key } = await buildApiKey(d, u);
    expect((await d.api.get('/v1/me', { apiKey: key })).status).to.equal(200);
    // Authentication reads keys through its prepared read: that is what must not be called.
    const reads = (d.container.auth as unknown as { reads: { apiKey: { first: (...a: unknown[]) => unknown } } }).reads;
    const spy = sinon.spy(reads.apiKey, 'first');
    try {
      // The spy sees a well-formed key's lookup (so a count of 0 below means something).
      expect((await d.api.get('/v1/me', { apiKey: key })).status).to.equal(200);
      expect(spy.callCount).to.equal(1);
      spy.resetHistory();
      const i = 20;
      const changed = key.slice(0, i) + (key[i] === 'a' ? 'b' : 'a') + key.slice(i + 1);
      const r = await d.api.get('/v1/me', { apiKey: changed });
      expect(r.status).to.equal(401);
      expect(r.body.error.code).to.equal('INVALID_TOKEN');
      expect(spy.callCount).to.equal(0);
    } finally {
      spy.restore();
    }
  });

  it('refuses revoked and expired keys, and keys used beyond their scopes', async () => {
    const u = await buildUser(d);
    const revoked = await buildApiKey(d, u);
    expect((await d.api.delete(`/v1/api-keys/${revoked.id}`, { token: u.token })).status).to.equal(200);
    expect((await d.api.get('/v1/me', { apiKey: revoked.key })).body.error.code).to.equal('API_KEY_REVOKED');
    const expiring = await buildApiKey(d, u, { expires_at: new Date(Date.now() + 60_000).toISOString() });
    await d.container.database.db
      .updateTable('api_keys')
      .set({ expires_at: Date.now() - 1 })
      .where('id', '=', expiring.id)
      .execute();
    expect((await d.api.get('/v1/me', { apiKey: expiring.key })).body.error.code).to.equal('API_KEY_EXPIRED');
    const readOnly = await buildApiKey(d, u, { scopes: ['credits:read'] });
    const admin = await d.api.get('/v1/admin/users', { apiKey: readOnly.key });
    expect(admin.status).to.equal(403);
    expect(admin.body.error.code).to.equal('INSUFFICIENT_SCOPE');
    const beyond = await d.api.post('/v1/api-keys', { name: 'x', scopes: ['admin'] }, { token: u.token });
    expect(beyond.status).to.equal(403);
    expect(beyond.body.error.code).to.equal('INSUFFICIENT_SCOPE');
  });

  it('caps concurrent argon2 work: a flood of logins gets 401/429/503, never a crash', async () => {
    const flood = await startDaemon({
      backend,
      config: {
        auth: {
          max_concurrent_hashes: 1,
          login_throttle: { max_failures_per_email: 1000, max_failures_per_ip: 1000, window_seconds: 60 },
        },
      },
    });
    try {
      const email = uniqueEmail('flood');
      const results = await Promise.all(
        Array.from({ length: 60 }, () => flood.api.post('/v1/auth/login', { email, password: 'p'.repeat(1000) })),
      );
      const codes = new Set(results.map((r) => r.status));
      expect([...codes].every((c) => [401, 429, 503].includes(c))).to.equal(true);
      expect(codes.has(503)).to.equal(true);
      expect(results.find((r) => r.status === 503)!.headers.get('retry-after')).to.equal('1');
      expect((await flood.api.get('/health/live')).status).to.equal(200);
    } finally {
      await flood.stop();
    }
  });

  it('refuses a tampered token even while the genuine one is kept as verified', async () => {
    const u = await buildUser(d);
    expect((await meWith(u.token)).status).to.equal(200);
    const [h, p, sig] = u.token.split('.');
    const flipped = sig!.slice(0, -2) + (sig!.slice(-2) === 'AA' ? 'AB' : 'AA');
    expect((await meWith(`${h}.${p}.${flipped}`)).body.error.code).to.equal('INVALID_TOKEN');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
    const promoted = b64({ ...claims, role: 'platform_admin', scopes: [...claims.scopes, 'admin'] });
    expect((await meWith(`${h}.${promoted}.${sig}`)).body.error.code).to.equal('INVALID_TOKEN');
    expect((await meWith(`${u.token} `)).status).to.equal(200); // the header's trailing space is not part of the token
    expect((await meWith(u.token + 'x')).body.error.code).to.equal('INVALID_TOKEN');
  });

  it('applies a suspension, reactivation, logout-everywhere and demotion to the very next request, kept rows or not', async () => {
    const admin = await buildUser(d, { role: 'admin', tier: 'enterprise' });
    const u = await buildUser(d);
    const key = await buildApiKey(d, u);
    // Warm every kept row: the token, the user, the key.
    for (let i = 0; i < 3; i++) {
      expect((await meWith(u.token)).status).to.equal(200);
      expect((await d.api.get('/v1/me', { apiKey: key.key })).status).to.equal(200);
    }
    expect((await d.api.post(`/v1/admin/users/${u.user.id}/suspend`, {}, { token: admin.token })).status).to.equal(200);
    // Suspension also revokes every token issued so far; the key answers with the account's state.
    expect((await meWith(u.token)).body.error.code).to.equal('INVALID_TOKEN');
    expect((await d.api.get('/v1/me', { apiKey: key.key })).body.error.code).to.equal('ACCOUNT_SUSPENDED');
    expect((await d.api.post(`/v1/admin/users/${u.user.id}/activate`, {}, { token: admin.token })).status).to.equal(
      200,
    );
    expect((await d.api.get('/v1/me', { apiKey: key.key })).status).to.equal(200);
    expect((await meWith(u.token)).body.error.code).to.equal('INVALID_TOKEN');
    await new Promise((r) => setTimeout(r, 5));
    const fresh = mintToken(d, u.user);
    expect((await meWith(fresh)).status).to.equal(200);
    expect((await d.api.post('/v1/auth/logout-all', {}, { token: fresh })).status).to.equal(200);
    expect((await meWith(fresh)).body.error.code).to.equal('INVALID_TOKEN');
    // An admin demoted to member loses the admin scope on the token it already holds.
    expect((await d.api.get('/v1/admin/users', { token: admin.token })).status).to.equal(200);
    await d.container.database.db
      .updateTable('users')
      .set({ role: 'member' })
      .where('id', '=', admin.user.id)
      .execute();
    expect((await d.api.get('/v1/admin/users', { token: admin.token })).body.error.code).to.equal('INSUFFICIENT_SCOPE');
  });

  it('sees a suspension written by another process within a second', async () => {
    const u = await buildUser(d);
    expect((await meWith(u.token)).status).to.equal(200);
    const outside = new Database({
      url: d.home.databaseUrl,
      poolMax: 1,
      connectTimeoutMs: 2000,
      busyTimeoutMs: 5000,
      logger: createLogger('silent'),
    });
    try {
      await outside.db.updateTable('users').set({ status: 'suspended' }).where('id', '=', u.user.id).execute();
      const started = Date.now();
      let code: string | undefined;
      while (Date.now() - started < 3000) {
        code = (await meWith(u.token)).body.error?.code;
        if (code) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(code).to.equal('ACCOUNT_SUSPENDED');
      // SQLite keeps the row at most 1 s; on Postgres the write is announced (daemon/storage/invalidation.ts).
      expect(Date.now() - started).to.be.lessThan(backend === 'postgres' ? 500 : 2000);
    } finally {
      await outside.close();
    }
  });

  it('expires access tokens after 15 minutes', async () => {
    const clock = new ManualClock(Date.now());
    const timed = await startDaemon({ backend, clock });
    try {
      const u = await buildUser(timed);
      expect((await timed.api.get('/v1/me', { token: u.token })).status).to.equal(200);
      clock.advance(901_000);
      const r = await timed.api.get('/v1/me', { token: u.token });
      expect(r.status).to.equal(401);
      expect(r.body.error.code).to.equal('TOKEN_EXPIRED');
    } finally {
      await timed.stop();
    }
  });
});
