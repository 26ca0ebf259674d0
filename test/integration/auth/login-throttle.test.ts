import { expect } from 'chai';
import sinon from 'sinon';
import { totpNow } from '../../../daemon/auth/totp.js';
import { describeShared, describeStorage } from '../../helpers/backends.js';
import { startDaemon, type DaemonOptions, type TestDaemon } from '../../helpers/daemon.js';
import type { ApiResponse } from '../../helpers/http.js';
import { auditRows, buildUser, mintToken, platformAdmin, type TestUser } from '../../helpers/factories.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let lastAddress = 0;
/** A client address of its own in 127.0.0.0/8 (never 127.0.0.1, the trusted proxy). */
function freshAddress(): string {
  const n = ++lastAddress;
  return `127.${20 + ((n >> 16) & 0x3f)}.${(n >> 8) & 0xff}.${n & 0xff}`;
}
/** The request comes from `ip`: the daemon trusts 127.0.0.1 (the test client) as a proxy. */
const from = (ip: string, extra: { token?: string } = {}) => ({ ...extra, headers: { 'x-forwarded-for': ip } });
const retryAfter = (r: ApiResponse) => Number(r.headers.get('retry-after'));

const THROTTLE = { max_failures_per_email: 5, max_failures_per_ip: 50, window_seconds: 900 };

function expectThrottled(r: ApiResponse): void {
  expect(r.status, r.text).to.equal(429);
  expect(r.body.error).to.include({ type: 'RATE_LIMIT_ERROR', code: 'LOGIN_THROTTLED' });
  expect(retryAfter(r)).to.be.at.least(1);
  expect(r.body.error.details.retry_after).to.equal(retryAfter(r));
}

/**
 * Sign-in throttling (daemon/auth/login-throttle.ts): an attempt is reserved
 * atomically before its password is checked, failures count per (email,
 * address) strictly and per email with a capped back-off, an administrator can
 * lift the email's back-off, every password and TOTP check behind a session is
 * throttled the same way, and one account cannot take every argon2 slot.
 */
describeStorage('sign-in throttling', (backend) => {
  describeShared('limiter', (shared) => {
    const options = (throttle: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): DaemonOptions => ({
      backend,
      shared,
      config: {
        server: { trusted_proxies: ['127.0.0.1'] },
        auth: { login_throttle: { ...THROTTLE, ...throttle }, ...extra },
      },
    });
    let d: TestDaemon;
    before(async () => {
      d = await startDaemon(options());
    });
    after(async () => d?.stop());

    const login = (t: TestDaemon, email: string, password: string, ip: string, mfa_token?: string) =>
      t.api.post('/v1/auth/login', { email, password, ...(mfa_token ? { mfa_token } : {}) }, from(ip));

    it('race: of 40 parallel guesses, at most max_failures_per_email passwords are checked and the right one sent last is refused', async () => {
      const u = await buildUser(d, { withPassword: true });
      const verify = sinon.spy(d.container.hasher, 'verify');
      let results: ApiResponse[];
      try {
        results = await Promise.all(
          Array.from({ length: 40 }, (_, i) =>
            login(d, u.email, i === 39 ? u.password : `wrong-guess-${i}-of-40`, freshAddress()),
          ),
        );
        expect(verify.callCount, 'password checks').to.be.at.most(THROTTLE.max_failures_per_email);
      } finally {
        verify.restore();
      }
      expectThrottled(results[39]!);
      expect(results.filter((r) => r.status === 401).length).to.equal(THROTTLE.max_failures_per_email);
      for (const r of results.filter((x) => x.status !== 401)) expectThrottled(r);
      const failures = (await auditRows(d)).filter(
        (r) => r.action === 'auth.login_failed' && r.target_id === u.user.id,
      );
      expect(failures.length).to.equal(THROTTLE.max_failures_per_email);
      expect((await auditRows(d)).some((r) => r.action === 'auth.login' && r.target_id === u.user.id)).to.equal(false);
    });

    it('per address: one address spraying many emails is throttled at max_failures_per_ip, whatever the email; others are not', async () => {
      const t = await startDaemon(options({ max_failures_per_ip: 6 }));
      try {
        const victims: TestUser[] = [];
        for (let i = 0; i < 4; i++) victims.push(await buildUser(t, { withPassword: true }));
        const sprayer = freshAddress();
        // Two wrong guesses for each of four emails: no email reaches its own limit (5), the address reaches 6.
        const statuses: number[] = [];
        for (const v of victims)
          for (let g = 0; g < 2; g++) statuses.push((await login(t, v.email, `spray-${g}`, sprayer)).status);
        expect(statuses.slice(0, 6)).to.deep.equal([401, 401, 401, 401, 401, 401]);
        expect(statuses.slice(6)).to.deep.equal([429, 429]);
        // The address is throttled for a fifth email it never tried, even with the right password.
        const fresh = await buildUser(t, { withPassword: true });
        expectThrottled(await login(t, fresh.email, fresh.password, sprayer));
        // Everyone else signs in, the sprayed emails included.
        for (const v of victims) expect((await login(t, v.email, v.password, freshAddress())).status).to.equal(200);
      } finally {
        await t.stop();
      }
    });

    it('race: of 40 parallel guesses from one address, at most max_failures_per_email passwords are checked', async () => {
      const u = await buildUser(d, { withPassword: true });
      const ip = freshAddress();
      const verify = sinon.spy(d.container.hasher, 'verify');
      try {
        const results = await Promise.all(
          Array.from({ length: 40 }, (_, i) => login(d, u.email, i === 39 ? u.password : `wrong-guess-${i}-of-40`, ip)),
        );
        expect(verify.callCount, 'password checks').to.be.at.most(THROTTLE.max_failures_per_email);
        expectThrottled(results[39]!);
      } finally {
        verify.restore();
      }
    });

    it('lockout as a weapon: 22 wrong passwords from elsewhere hold the owner back for at most max_backoff_seconds; the attacker address stays throttled', async () => {
      const short = await startDaemon(options({ max_backoff_seconds: 2 }));
      try {
        const u = await buildUser(short, { withPassword: true });
        const attacker = freshAddress();
        const statuses: number[] = [];
        for (let i = 0; i < 22; i++)
          statuses.push((await login(short, u.email, `wrong-guess-${i}-of-22`, attacker)).status);
        expect(statuses.slice(0, 5)).to.deep.equal([401, 401, 401, 401, 401]);
        expect(statuses.slice(5).every((s) => s === 429)).to.equal(true);

        // The owner, from an address of their own: at most the capped back-off, then in.
        const owner = freshAddress();
        const started = Date.now();
        let r = await login(short, u.email, u.password, owner);
        for (let tries = 0; r.status === 429 && tries < 4; tries++) {
          expectThrottled(r);
          expect(retryAfter(r)).to.be.at.most(2);
          await sleep(retryAfter(r) * 1000 + 50);
          r = await login(short, u.email, u.password, owner);
        }
        expect(r.status, r.text).to.equal(200);
        expect(Date.now() - started).to.be.below(2000 + 1000);

        // The attacker's own address stays throttled for the whole window, even with the right password.
        const again = await login(short, u.email, u.password, attacker);
        expectThrottled(again);
        expect(retryAfter(again)).to.be.greaterThan(2);
      } finally {
        await short.stop();
      }
    });

    it('retries while throttled do not lengthen the wait of the email beyond max_backoff_seconds', async () => {
      const short = await startDaemon(options({ max_backoff_seconds: 3 }));
      try {
        const u = await buildUser(short, { withPassword: true });
        // Many addresses, each guessing once, and many more attempts while throttled.
        for (let i = 0; i < 60; i++) {
          const r = await login(short, u.email, `wrong-guess-${i}-of-60`, freshAddress());
          if (r.status === 429) expect(retryAfter(r)).to.be.at.most(3);
          else expect(r.status).to.equal(401);
        }
        const r = await login(short, u.email, u.password, freshAddress());
        if (r.status === 429) expect(retryAfter(r)).to.be.at.most(3);
      } finally {
        await short.stop();
      }
    });

    it('unlock: POST /v1/admin/users/:id/unlock lets the owner in at once; the attacker address stays throttled', async () => {
      const u = await buildUser(d, { withPassword: true });
      const attacker = freshAddress();
      for (let i = 0; i < 22; i++) await login(d, u.email, `wrong-guess-${i}-of-22`, attacker);
      const owner = freshAddress();
      expectThrottled(await login(d, u.email, u.password, owner));

      const member = await buildUser(d);
      const refused = await d.api.post(`/v1/admin/users/${u.user.id}/unlock`, {}, { token: member.token });
      expect(refused.status).to.equal(403);
      const root = mintToken(d, await platformAdmin(d));
      expect(
        (await d.api.post('/v1/admin/users/usr_00000000000000000000000000/unlock', {}, { token: root })).status,
      ).to.equal(404);
      const unlocked = await d.api.post(`/v1/admin/users/${u.user.id}/unlock`, {}, { token: root });
      expect(unlocked.status, unlocked.text).to.equal(200);
      expect(unlocked.body.user).to.include({ id: u.user.id, email: u.email });
      const audit = (await auditRows(d)).find((r) => r.action === 'user.unlock' && r.target_id === u.user.id);
      expect(audit?.outcome).to.equal('success');
      expect(audit?.actor_type).to.equal('admin');

      const r = await login(d, u.email, u.password, owner);
      expect(r.status, r.text).to.equal(200);
      expectThrottled(await login(d, u.email, u.password, attacker));
      // By email, too.
      expect(
        (await d.api.post(`/v1/admin/users/${encodeURIComponent(u.email)}/unlock`, {}, { token: root })).status,
      ).to.equal(200);
    });

    it('POST /v1/auth/password: wrong current passwords are throttled, counted and audited; the right one is refused while throttled', async () => {
      const u = await buildUser(d, { withPassword: true });
      const ip = freshAddress();
      const change = (current: string) =>
        d.api.post(
          '/v1/auth/password',
          { current_password: current, new_password: 'a-brand-new-password-1' },
          from(ip, { token: u.token }),
        );
      for (let i = 0; i < THROTTLE.max_failures_per_email; i++) {
        const r = await change(`wrong-current-${i}-pw`);
        expect(r.status, r.text).to.equal(401);
        expect(r.body.error.code).to.equal('INVALID_CREDENTIALS');
      }
      expectThrottled(await change('wrong-current-again'));
      expectThrottled(await change(u.password));
      // The password did not change, and signing in is throttled for this email too.
      const rows = await auditRows(d);
      expect(
        rows.filter((r) => r.action === 'auth.password_change' && r.actor_id === u.user.id && r.outcome === 'failure')
          .length,
      ).to.equal(THROTTLE.max_failures_per_email);
      expect(
        rows.filter((r) => r.action === 'auth.password_change' && r.actor_id === u.user.id && r.outcome === 'denied')
          .length,
      ).to.equal(2);
      expect(
        rows.some((r) => r.action === 'auth.password_change' && r.actor_id === u.user.id && r.outcome === 'success'),
      ).to.equal(false);
      expectThrottled(await login(d, u.email, u.password, freshAddress()));
    });

    it('POST /v1/auth/mfa/disable: wrong codes are throttled and counted; a valid code is refused while throttled', async () => {
      const u = await buildUser(d, { withPassword: true });
      const setup = await d.api.post('/v1/auth/mfa/setup', {}, { token: u.token });
      expect(setup.status, setup.text).to.equal(200);
      const enable = await d.api.post(
        '/v1/auth/mfa/enable',
        { token: totpNow(setup.body.secret, Date.now()) },
        { token: u.token },
      );
      expect(enable.status, enable.text).to.equal(200);
      const codes: string[] = enable.body.recovery_codes;
      const token = mintToken(d, u.user);
      const ip = freshAddress();
      const disable = (code: string) => d.api.post('/v1/auth/mfa/disable', { token: code }, from(ip, { token }));
      for (let i = 0; i < THROTTLE.max_failures_per_email; i++) {
        const r = await disable(`zzzz${i}-zzzzz`);
        expect(r.status, r.text).to.equal(401);
        expect(r.body.error.code).to.equal('INVALID_MFA');
      }
      expectThrottled(await disable('000000'));
      expectThrottled(await disable(codes[0]!));
      const row = await d.container.database.db
        .selectFrom('users')
        .select('mfa_enabled')
        .where('id', '=', u.user.id)
        .executeTakeFirstOrThrow();
      expect(Number(row.mfa_enabled)).to.equal(1);
      const rows = await auditRows(d);
      expect(
        rows.filter((r) => r.action === 'auth.mfa_disable' && r.actor_id === u.user.id && r.outcome === 'failure')
          .length,
      ).to.equal(THROTTLE.max_failures_per_email);
      expect(
        rows.filter((r) => r.action === 'auth.mfa_disable' && r.actor_id === u.user.id && r.outcome === 'denied')
          .length,
      ).to.equal(2);
    });

    it('one account cannot starve sign-in: 120 concurrent password changes of one member, other users still sign in', async () => {
      // Failure budgets out of the way: what is tested is the sharing of the argon2 slots.
      const flood = await startDaemon(options({ max_failures_per_email: 1000, max_failures_per_ip: 1000 }));
      try {
        const member = await buildUser(flood, { withPassword: true });
        const others: TestUser[] = [];
        for (let i = 0; i < 8; i++) others.push(await buildUser(flood, { withPassword: true }));
        const memberIp = freshAddress();
        const changes = Array.from({ length: 120 }, (_, i) =>
          flood.api.post(
            '/v1/auth/password',
            { current_password: member.password, new_password: `new-password-${i}-of-120` },
            from(memberIp, { token: member.token }),
          ),
        );
        await sleep(50);
        const logins = others.map((o) => login(flood, o.email, o.password, freshAddress()));
        const [changed, signedIn] = await Promise.all([Promise.all(changes), Promise.all(logins)]);
        for (const r of signedIn) expect(r.status, r.text).to.equal(200);
        const excess = changed.filter((r) => r.status === 429 || r.status === 503);
        expect(excess.length).to.be.greaterThan(0);
        for (const r of excess) expect(retryAfter(r), r.text).to.be.at.least(1);
        expect(
          changed.every((r) => [200, 401, 429, 503].includes(r.status)),
          JSON.stringify(changed.map((r) => r.status)),
        ).to.equal(true);
      } finally {
        await flood.stop();
      }
    });
  });
});
