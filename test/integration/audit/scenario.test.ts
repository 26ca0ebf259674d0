import { expect } from 'chai';
import type { AuditRecord } from '../../../daemon/audit/entry.js';
import { totpNow } from '../../../daemon/auth/totp.js';
import type { Micros } from '../../../daemon/credits/money.js';
import { escapeText, formatEntry } from '../../../cli/commands/audit.js';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import type { ApiResponse } from '../../helpers/http.js';
import { buildTenant, buildUser, mintToken, platformAdmin } from '../../helpers/factories.js';

/**
 * One user's day, through the HTTP API: every step must leave its audit entry
 * with the right actor and outcome, and no secret of the day may reach the
 * audit table, the logs or an error body.
 */
describeStorage('audit scenario: a day of sign-ins and administration, end to end', (backend) => {
  let d: TestDaemon;
  let tenant: string;
  let admin: string;
  let adminId: string;
  const errorBodies: string[] = [];
  const secrets: Record<string, string> = {};
  let userId: string;
  let keyId: string;

  /** Every response below 400 is the caller's own data; every other one is an error body to search. */
  const track = <T>(r: ApiResponse<T>): ApiResponse<T> => {
    if (r.status >= 400) errorBodies.push(r.text);
    return r;
  };

  before(async () => {
    d = await startDaemon({ backend });
    tenant = await buildTenant(d, `Scenario-${backend}`);
    const a = await buildUser(d, { role: 'admin', tenantId: tenant });
    admin = a.token;
    adminId = a.user.id;

    const u = await buildUser(d, { tenantId: tenant, withPassword: true });
    userId = u.user.id;
    secrets.password = u.password;
    secrets.wrongPassword = `${u.password}-but-wrong`;

    // A wrong password, an unknown email, then a good sign-in.
    expect(
      track(await d.api.post('/v1/auth/login', { email: u.email, password: secrets.wrongPassword })).status,
    ).to.equal(401);
    expect(
      track(await d.api.post('/v1/auth/login', { email: `nobody-${u.email}`, password: u.password })).status,
    ).to.equal(401);
    const login = track(await d.api.post('/v1/auth/login', { email: u.email, password: u.password }));
    expect(login.status, login.text).to.equal(200);
    secrets.accessToken = login.body.tokens.access_token;
    secrets.refreshToken = login.body.tokens.refresh_token;

    // A refresh, then the old refresh token again: reuse.
    const refreshed = track(await d.api.post('/v1/auth/refresh', { refresh_token: secrets.refreshToken }));
    expect(refreshed.status).to.equal(200);
    secrets.refreshToken2 = refreshed.body.tokens.refresh_token;
    expect(track(await d.api.post('/v1/auth/refresh', { refresh_token: secrets.refreshToken })).status).to.equal(401);
    // The reuse ended that sign-in, its access tokens with it: sign in again.
    expect(track(await d.api.get('/v1/me', { token: secrets.accessToken })).status).to.equal(401);
    const again = track(await d.api.post('/v1/auth/login', { email: u.email, password: u.password }));
    expect(again.status, again.text).to.equal(200);
    secrets.accessToken2 = again.body.tokens.access_token;
    const access = secrets.accessToken2!;

    // MFA: setup, a wrong code, then enable.
    const setup = track(await d.api.post('/v1/auth/mfa/setup', {}, { token: access }));
    expect(setup.status, setup.text).to.equal(200);
    secrets.totpSecret = setup.body.secret;
    secrets.otpauthUrl = setup.body.otpauth_url;
    const code = totpNow(setup.body.secret, Date.now());
    expect(
      track(
        await d.api.post('/v1/auth/mfa/enable', { token: code === '000000' ? '111111' : '000000' }, { token: access }),
      ).status,
    ).to.equal(401);
    const enabled = track(await d.api.post('/v1/auth/mfa/enable', { token: code }, { token: access }));
    expect(enabled.status, enabled.text).to.equal(200);
    secrets.recoveryCode = enabled.body.recovery_codes[0];

    // An API key: create, use, revoke, use again; then a malformed credential.
    const key = track(await d.api.post('/v1/api-keys', { name: 'laptop' }, { token: access }));
    expect(key.status, key.text).to.equal(201);
    secrets.apiKey = key.body.key;
    keyId = key.body.api_key.id;
    expect(track(await d.api.get('/v1/me', { apiKey: secrets.apiKey })).status).to.equal(200);
    expect(track(await d.api.delete(`/v1/api-keys/${keyId}`, { token: access })).status).to.equal(200);
    expect(track(await d.api.get('/v1/me', { apiKey: secrets.apiKey })).status).to.equal(401);
    expect(track(await d.api.get('/v1/me', { headers: { authorization: `Token ${secrets.apiKey}` } })).status).to.equal(
      401,
    );
    // Secrets in the wrong places of a request must not be echoed back.
    track(
      await d.api.post('/v1/auth/login', {
        email: secrets.password,
        password: secrets.apiKey,
        extra: secrets.totpSecret,
      }),
    );
    track(await d.api.post('/v1/auth/refresh', { refresh_token: `${secrets.refreshToken2}x` }));

    // The tenant admin suspends the user; the platform grants credits.
    expect(track(await d.api.post(`/v1/admin/users/${userId}/suspend`, {}, { token: admin })).status).to.equal(200);
    const root = await platformAdmin(d);
    await d.container.ledger.grant({
      userId,
      amount: 5_000_000 as Micros,
      reason: 'welcome',
      actor: { type: 'admin', id: root.id },
    });
    await d.container.auditStore.flush();
  });
  after(async () => d?.stop());

  /** The user's entries, read back through the admin API as an operator would. */
  async function entriesOf(): Promise<AuditRecord[]> {
    const r = await d.api.get(`/v1/admin/audit?order=asc&limit=500&tenant_id=${tenant}`, {
      token: mintToken(d, await platformAdmin(d)),
    });
    expect(r.status, r.text).to.equal(200);
    return r.body.entries;
  }

  it('leaves each expected entry with its actor type and outcome', async () => {
    const entries = await entriesOf();
    const find = (action: string, outcome: string, actorType: string) =>
      entries.find((e) => e.action === action && e.outcome === outcome && e.actor_type === actorType);
    const expected: Array<[string, string, string, string | null]> = [
      ['auth.login_failed', 'failure', 'user', userId],
      ['auth.login', 'success', 'user', userId],
      ['auth.refresh', 'success', 'user', userId],
      ['auth.mfa_setup', 'success', 'user', userId],
      ['auth.mfa_enable', 'failure', 'user', userId],
      ['auth.mfa_enable', 'success', 'user', userId],
      ['key.create', 'success', 'user', userId],
      ['key.revoke', 'success', 'user', userId],
      ['user.suspend', 'success', 'admin', adminId],
      ['credits.grant', 'success', 'admin', null],
    ];
    for (const [action, outcome, actorType, actorId] of expected) {
      const e = find(action, outcome, actorType);
      expect(e, `${action}:${outcome} by ${actorType}`).to.not.equal(undefined);
      if (actorId) expect(e!.actor_id, action).to.equal(actorId);
      expect(e!.tenant_id, action).to.equal(tenant);
    }
    const failed = entries.find((e) => e.action === 'auth.login_failed' && e.actor_type === 'user')!;
    expect(failed.details.reason).to.equal('wrong_password');
    expect(failed.target_id).to.equal(userId);
    expect(find('key.create', 'success', 'user')!.target_id).to.equal(keyId);
    expect(find('user.suspend', 'success', 'admin')!.target_id).to.equal(userId);
    expect(find('credits.grant', 'success', 'admin')!.details).to.include({ amount: 5, reason: 'welcome' });
    // Recorded without the user's tenant (see the report): found platform-wide, by user.
    const byUser = (
      await d.api.get(`/v1/admin/audit?user_id=${userId}&action=auth.refresh_reused&limit=500`, {
        token: mintToken(d, await platformAdmin(d)),
      })
    ).body.entries as AuditRecord[];
    expect(byUser.map((e) => `${e.actor_type}:${e.outcome}`)).to.deep.equal(['user:denied']);
    // The unknown email has no tenant: it is a platform-level anonymous failure.
    const platformWide = (
      await d.api.get('/v1/admin/audit?action=auth.login_failed&outcome=failure&limit=500', {
        token: mintToken(d, await platformAdmin(d)),
      })
    ).body.entries as AuditRecord[];
    expect(
      platformWide.some(
        (e) => e.actor_type === 'anonymous' && e.actor_id === null && e.details.reason === 'unknown_email',
      ),
    ).to.equal(true);
    // Every request-driven entry carries its request id and client address.
    for (const e of entries.filter((x) => x.action.startsWith('auth.'))) {
      expect(e.request_id, e.action).to.match(/^req_/);
      expect(e.ip, e.action).to.be.a('string');
    }
  });

  it('keeps every secret of the day out of the audit rows, the logs and every error body (canary)', async () => {
    expect(errorBodies.length).to.be.greaterThan(5);
    const rows = await d.container.database.db.selectFrom('audit_log').selectAll().execute();
    const places: Record<string, string> = {
      'audit rows': JSON.stringify(rows),
      logs: d.logs.join(''),
      'error bodies': errorBodies.join('\n'),
    };
    expect(places.logs!.length).to.be.greaterThan(0);
    expect(Object.keys(secrets)).to.include.members([
      'password',
      'apiKey',
      'refreshToken',
      'totpSecret',
      'recoveryCode',
    ]);
    for (const [where, text] of Object.entries(places)) {
      for (const [name, secret] of Object.entries(secrets)) {
        expect(secret.length, name).to.be.greaterThan(5);
        expect(text.includes(secret), `${name} found in ${where}`).to.equal(false);
      }
    }
  });

  it('stores hostile text (newline, JSON, terminal escapes) as given and the CLI prints each entry on one escaped line', async () => {
    // The API refuses C0 control characters in names and emails; C1 controls, bidi overrides and JSON get through.
    const name = 'ci {"role":"platform_admin"} \u202egnp.exe \u009b2J';
    const key = await d.api.post(
      '/v1/api-keys',
      { name },
      { token: mintToken(d, (await buildUser(d, { tenantId: tenant })).user) },
    );
    expect(key.status, key.text).to.equal(201);
    // A service may record text from elsewhere: a newline there must not forge a line either.
    const forged = `x@example.test\n2026-01-01T00:00:00.000Z #1 success auth.login user:usr_root {"role":"platform_admin"}\u001b[2J`;
    await d.container.auditStore.record({
      action: 'auth.login_failed',
      outcome: 'failure',
      actor: { type: 'anonymous', id: null },
      tenantId: tenant,
      target: { type: 'user', id: 'usr_evil\nline' },
      details: { reason: 'unknown_email', email: forged },
    });
    const r = await d.api.get('/v1/admin/audit?limit=5', { token: admin });
    const entries = r.body.entries as AuditRecord[];
    const created = entries.find((e) => e.action === 'key.create' && e.details.name === name);
    const failed = entries.find((e) => e.action === 'auth.login_failed' && e.details.email === forged);
    expect(created, 'key.create with the hostile name, stored as given').to.not.equal(undefined);
    expect(failed, 'the forged email, stored as given').to.not.equal(undefined);
    expect(failed!.target_id).to.equal('usr_evil\nline');
    for (const e of [created!, failed!]) {
      const line = formatEntry(e as never);
      expect(line.endsWith('\n')).to.equal(true);
      expect(line.slice(0, -1)).to.not.match(/[\u0000-\u001f\u007f-\u009f\u202e]/);
    }
    expect(formatEntry(failed! as never))
      .to.include('usr_evil\\u000aline')
      .and.include('\\n2026-01-01');
    expect(formatEntry(created! as never)).to.include('\\u202egnp.exe \\u009b2J');
    expect(escapeText('a\nb\u009b\u202ec')).to.equal('a\\u000ab\\u009b\\u202ec');
  });
});
