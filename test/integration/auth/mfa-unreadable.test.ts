import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { runChecks } from '../../../cli/commands/doctor.js';
import { totpNow } from '../../../daemon/auth/totp.js';
import { PROJECT_ROOT } from '../../../daemon/paths.js';
import { describeStorage } from '../../helpers/backends.js';
import { makeHome, startDaemon, type DaemonHome, type TestDaemon } from '../../helpers/daemon.js';
import { auditRows, buildUser, platformAdmin, principal, type TestUser } from '../../helpers/factories.js';

const secret = () => randomBytes(40).toString('base64url');

/** The JSON log lines of a daemon whose message includes `text`. */
const logLines = (d: TestDaemon, text: string) =>
  d.logs
    .flatMap((chunk) => chunk.split('\n'))
    .filter((l) => l.includes(text))
    .map((l) => JSON.parse(l) as Record<string, any>);

/**
 * JWT_SECRET changed without JWT_PREVIOUS_SECRETS: the MFA secrets sealed under
 * the old one no longer open. A valid TOTP sign-in answers MFA_UNAVAILABLE (not a
 * bare 500) telling the user to ask for `reset-mfa`, the audit log records it,
 * start-up warns with the count, and `keen-admin doctor` reports it.
 */
describeStorage('MFA secrets that no longer open after a JWT_SECRET change', (backend) => {
  let home: DaemonHome;
  const daemons: TestDaemon[] = [];
  const secretA = secret();
  const secretB = secret();
  before(async () => {
    home = await makeHome({ backend, jwtSecret: secretA });
  });
  after(async () => {
    for (const d of daemons) await d.stop().catch(() => undefined);
    await home?.cleanup();
  });
  async function daemon(jwtSecret: string, previousJwtSecrets?: string[]): Promise<TestDaemon> {
    const d = await startDaemon({
      backend,
      databaseUrl: home.databaseUrl,
      jwtSecret,
      ...(previousJwtSecrets ? { previousJwtSecrets } : {}),
    });
    daemons.push(d);
    return d;
  }
  async function doctor(d: TestDaemon, env: Record<string, string>) {
    const file = path.join(d.home.dataDir, `gateway-${randomBytes(4).toString('hex')}.yaml`);
    writeFileSync(
      file,
      stringify({
        data_dir: d.home.dataDir,
        database: { url: home.databaseUrl },
        agent: { command: ['node', path.join(PROJECT_ROOT, 'examples/agent/agent.js')] },
      }),
    );
    const checks = await runChecks({ file, env: { PATH: process.env.PATH, ...env }, daemonUrl: d.url });
    return checks.find((c) => c.name === 'mfa_secrets');
  }

  it('answers MFA_UNAVAILABLE naming reset-mfa, audits it, warns at start and in doctor', async function () {
    this.timeout(90_000);
    const a = await daemon(secretA);
    const u: TestUser = await buildUser(a, { withPassword: true });
    const setup = await a.api.post('/v1/auth/mfa/setup', {}, { token: u.token });
    expect(setup.status, setup.text).to.equal(200);
    const totpSecret = setup.body.secret as string;
    const enable = await a.api.post(
      '/v1/auth/mfa/enable',
      { token: totpNow(totpSecret, Date.now()) },
      { token: u.token },
    );
    expect(enable.status, enable.text).to.equal(200);
    const recovery = enable.body.recovery_codes[0] as string;
    expect(logLines(a, 'MFA')).to.deep.equal([]);
    await a.stop();

    // The secret changed, no previous secret: the sealed TOTP secret does not open.
    const b = await daemon(secretB);
    const warnings = logLines(b, 'MFA secret');
    expect(warnings, JSON.stringify(b.logs)).to.have.length(1);
    expect(warnings[0]!.level).to.equal('warn');
    expect(warnings[0]!.unreadable).to.equal(1);
    expect(warnings[0]!.msg).to.include('JWT_PREVIOUS_SECRETS').and.include('reset-mfa');

    const before = b.logs.length;
    const login = await b.api.post('/v1/auth/login', {
      email: u.email,
      password: u.password,
      mfa_token: totpNow(totpSecret, Date.now() + 30_000),
    });
    expect(login.status, login.text).to.equal(409);
    expect(login.body.error.type).to.equal('CONFLICT');
    expect(login.body.error.code).to.equal('MFA_UNAVAILABLE');
    expect(login.body.error.message).to.include('reset-mfa').and.include('administrator');
    expect(b.logs.slice(before).filter((l) => /"level":"(error|fatal)"/.test(l))).to.deep.equal([]);
    const rows = (await auditRows(b)).filter((r) => r.action === 'auth.mfa_unreadable');
    expect(rows).to.have.length(1);
    expect(rows[0]).to.include({
      outcome: 'failure',
      actor_type: 'user',
      actor_id: u.user.id,
      target_type: 'user',
      target_id: u.user.id,
    });

    // A recovery code is not sealed (only hashed): it still signs in.
    const withRecovery = await b.api.post('/v1/auth/login', {
      email: u.email,
      password: u.password,
      mfa_token: recovery,
    });
    expect(withRecovery.status, withRecovery.text).to.equal(200);
    // Turning MFA off with a TOTP code cannot be checked either: the same answer, audited.
    const disable = await b.api.post(
      '/v1/auth/mfa/disable',
      { token: totpNow(totpSecret, Date.now() + 60_000) },
      { token: withRecovery.body.tokens.access_token },
    );
    expect(disable.status, disable.text).to.equal(409);
    expect(disable.body.error.code).to.equal('MFA_UNAVAILABLE');
    const audited = (await auditRows(b))
      .filter((r) => r.action === 'auth.mfa_unreadable')
      .map((r) => JSON.parse(String(r.details)).during);
    expect(audited).to.deep.equal(['login', 'mfa_disable']);

    // doctor, run with the daemon's environment, names the problem; with the old secret as a previous one it is fine.
    const broken = await doctor(b, { JWT_SECRET: secretB });
    expect(broken, 'an mfa_secrets check').to.not.equal(undefined);
    expect(broken!.status).to.equal('warn');
    expect(broken!.message).to.include('1 user').and.include('reset-mfa').and.include(u.user.id);
    const overlap = await doctor(b, { JWT_SECRET: secretB, JWT_PREVIOUS_SECRETS: secretA });
    expect(overlap!.status, overlap!.message).to.equal('ok');

    // After reset-mfa the user signs in without MFA; nothing is left to warn about.
    const admin = await platformAdmin(b);
    await b.container.users.resetMfa(principal(admin), u.user.id);
    const fixed = await doctor(b, { JWT_SECRET: secretB });
    expect(fixed!.status, fixed!.message).to.equal('ok');
    await b.stop();
    const c = await daemon(secretB);
    expect(logLines(c, 'MFA secret')).to.deep.equal([]);
    expect((await c.api.post('/v1/auth/login', { email: u.email, password: u.password })).status).to.equal(200);
  });
});
