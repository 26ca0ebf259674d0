import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { describeStorage } from '../helpers/backends.js';
import { spawnDaemon, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { verifyChain } from '../../daemon/audit/verify.js';
import { Database } from '../../daemon/storage/database.js';
import { createLogger } from '../../daemon/logger.js';
import { runAdmin } from '../helpers/cli.js';
import { buildUser, uniqueEmail } from '../helpers/factories.js';

const admin = runAdmin;

describeStorage('keen-admin against a real daemon', (backend) => {
  let d: TestDaemon;
  let key: string;
  let env: Record<string, string>;
  let configFile: string;

  before(async () => {
    d = await startDaemon({ backend });
    configFile = path.join(d.home.dataDir, 'gateway.yaml');
    writeFileSync(configFile, stringify({ data_dir: d.home.dataDir, database: { url: d.home.databaseUrl } }));
  });
  after(async () => d?.stop());

  it('init creates the platform admin once and prints its key; the second init is refused', async () => {
    const email = uniqueEmail('ops');
    const first = await admin(['init', '--email', email, '--config', configFile, '--json']);
    expect(first.code, first.stderr).to.equal(0);
    expect(first.json.user).to.include({ email, role: 'platform_admin' });
    expect(first.json.key).to.match(/^ak_live_/);
    key = first.json.key;
    env = { KEEN_URL: d.url, KEEN_API_KEY: key };
    const second = await admin(['init', '--email', uniqueEmail('ops2'), '--config', configFile]);
    expect(second.code).to.equal(1);
    expect(second.stderr).to.include('ALREADY_EXISTS');
    expect(second.stdout).to.equal('');
  });

  it('tenants create and list', async () => {
    const c = await admin(['tenants', 'create', 'Initech', '--json'], { env });
    expect(c.code, c.stderr).to.equal(0);
    expect(c.json.tenant.name).to.equal('Initech');
    const l = await admin(['tenants', 'list', '--json'], { env });
    expect(l.json.tenants.map((t: { name: string }) => t.name)).to.include('Initech');
    const table = await admin(['tenants', 'list'], { env });
    expect(table.stdout).to.match(/^ID\s+NAME\s+POOL\s+CREATED_AT/);
  });

  it('users create (password from stdin), list, show, set-tier, suspend, activate, reset-mfa, unlock', async () => {
    const email = uniqueEmail('cli');
    const c = await admin(['users', 'create', '--email', email, '--tier', 'team', '--password-stdin', '--json'], {
      env,
      stdin: 'a-long-enough-password\n',
    });
    expect(c.code, c.stderr).to.equal(0);
    expect(c.json.user).to.include({ email, tier: 'team', role: 'member' });
    expect((await d.api.post('/v1/auth/login', { email, password: 'a-long-enough-password' })).status).to.equal(200);
    const list = await admin(['users', 'list', '--json'], { env });
    expect(list.json.users.map((u: { email: string }) => u.email)).to.include(email);
    expect((await admin(['users', 'show', email, '--json'], { env })).json.user.id).to.equal(c.json.user.id);
    expect((await admin(['users', 'set-tier', email, 'enterprise', '--json'], { env })).json.user.tier).to.equal(
      'enterprise',
    );
    expect((await admin(['users', 'suspend', email, '--json'], { env })).json.user.status).to.equal('suspended');
    expect((await admin(['users', 'activate', c.json.user.id, '--json'], { env })).json.user.status).to.equal('active');
    expect((await admin(['users', 'reset-mfa', email, '--json'], { env })).json.user.mfa_enabled).to.equal(false);
    // unlock: failures from elsewhere hold the email back; the admin lifts it at once.
    for (let i = 0; i < 6; i++) await d.api.post('/v1/auth/login', { email, password: `wrong-password-${i}` });
    expect((await d.api.post('/v1/auth/login', { email, password: 'a-long-enough-password' })).status).to.equal(429);
    const unlocked = await admin(['users', 'unlock', email, '--json'], { env });
    expect(unlocked.code, unlocked.stderr).to.equal(0);
    expect(unlocked.json.user.email).to.equal(email);
    const table = await admin(['users', 'show', email], { env });
    expect(table.stdout)
      .to.include(email)
      .and.match(/^ID\s+EMAIL/);
  });

  it('refuses a short password from stdin and creates nothing', async () => {
    const email = uniqueEmail('short');
    const r = await admin(['users', 'create', '--email', email, '--password-stdin'], { env, stdin: 'short\n' });
    expect(r.code).to.equal(1);
    expect(r.stderr).to.include('INVALID_FIELD').and.include('at least 12');
    expect(r.stderr).not.to.include('short\n');
    expect((await admin(['users', 'show', email], { env })).code).to.equal(1);
  });

  it('keys create (printed once), list without the key, revoke', async () => {
    const u = await buildUser(d);
    const c = await admin(
      [
        'keys',
        'create',
        '--user',
        u.email,
        '--name',
        'ci',
        '--scopes',
        'credits:read,sessions:read',
        '--rate-limit',
        '100',
        '--expires',
        '30d',
        '--json',
      ],
      { env },
    );
    expect(c.code, c.stderr).to.equal(0);
    expect(c.json.key).to.match(/^ak_live_/);
    expect(c.json.api_key).to.include({ rate_limit_per_hour: 100 });
    expect(c.json.api_key.scopes).to.deep.equal(['credits:read', 'sessions:read']);
    const people = await admin(['keys', 'create', '--user', u.email, '--name', 'people'], { env });
    expect(people.stdout).to.match(/key: ak_live_/);
    expect(people.stderr).to.include('shown only once');
    const l = await admin(['keys', 'list', '--user', u.email, '--json'], { env });
    expect(l.json.api_keys).to.have.length(2);
    expect(l.stdout).not.to.include(c.json.key);
    const r = await admin(['keys', 'revoke', c.json.api_key.id, '--json'], { env });
    expect(r.json.api_key.status).to.equal('revoked');
    expect((await d.api.get('/v1/me', { apiKey: c.json.key })).body.error.code).to.equal('API_KEY_REVOKED');
  });

  it('exits 2 on a wrong flag or a bad value, with a helpful line', async () => {
    const r = await admin(['users', 'create', '--email', 'x@y.z', '--emial', 'x@y.z'], { env });
    expect(r.code).to.equal(2);
    expect(r.stderr).to.include("unknown option '--emial'");
    const t = await admin(['users', 'create', '--email', 'x@y.z', '--tier', 'gold'], { env });
    expect(t.code).to.equal(2);
    expect(
      (await admin(['keys', 'create', '--user', 'a', '--name', 'b', '--rate-limit', 'lots'], { env })).code,
    ).to.equal(2);
    expect((await admin(['users', 'list'], { env: { KEEN_URL: d.url } })).code).to.equal(2);
  });

  it('exits 3 when the daemon is down', async () => {
    const r = await admin(['users', 'list'], { env: { KEEN_URL: 'http://127.0.0.1:1', KEEN_API_KEY: key } });
    expect(r.code).to.equal(3);
    expect(r.stderr).to.include('cannot reach');
  });

  it('exits 1 with AUTHORIZATION_ERROR for a non-admin key, naming the request id', async () => {
    const u = await buildUser(d);
    const k = (await d.api.post('/v1/api-keys', { name: 'member' }, { token: u.token })).body.key;
    const r = await admin(['users', 'list'], { env: { KEEN_URL: d.url, KEEN_API_KEY: k } });
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/AUTHORIZATION_ERROR INSUFFICIENT_SCOPE: .* \(request req_[0-9a-z]+\)/);
    const j = await admin(['users', 'list', '--json'], { env: { KEEN_URL: d.url, KEEN_API_KEY: k } });
    expect(JSON.parse(j.stderr).error.code).to.equal('INSUFFICIENT_SCOPE');
  });

  it('prints help with an example on every command', async () => {
    for (const args of [
      ['--help'],
      ['users', '--help'],
      ['users', 'create', '--help'],
      ['keys', 'create', '--help'],
      ['init', '--help'],
    ]) {
      const r = await admin(args);
      expect(r.code, args.join(' ')).to.equal(0);
      expect(r.stdout).to.include('Usage:');
    }
    expect((await admin(['keys', 'create', '--help'])).stdout).to.match(/Examples?:/);
  });
});

describe('the daemon records audit entries durably by default', () => {
  it('init, a failed login and an admin action land in audit_log with a verifying chain', async () => {
    const daemon = await spawnDaemon();
    try {
      const cfg = path.join(daemon.home.dataDir, 'gateway.yaml');
      const init = await admin(['init', '--email', uniqueEmail('root'), '--config', cfg, '--json']);
      expect(init.code, init.stderr).to.equal(0);
      const env = { KEEN_URL: daemon.url, KEEN_API_KEY: init.json.key };
      expect((await admin(['tenants', 'create', 'Durable', '--json'], { env })).code).to.equal(0);
      await daemon.api.post('/v1/auth/login', { email: uniqueEmail('nobody'), password: 'canary-password-123' });
      const db = new Database({
        url: daemon.home.databaseUrl,
        poolMax: 1,
        connectTimeoutMs: 2000,
        busyTimeoutMs: 2000,
        logger: createLogger('silent'),
      });
      try {
        const rows = await db.db.selectFrom('audit_log').selectAll().orderBy('seq').execute();
        const actions = rows.map((r) => r.action);
        expect(actions).to.include.members(['user.create', 'key.create', 'tenant.create', 'auth.login_failed']);
        expect(JSON.stringify(rows)).not.to.include('canary-password-123').and.not.include(init.json.key);
        const report = await verifyChain(db);
        expect(report.ok, JSON.stringify(report)).to.equal(true);
      } finally {
        await db.close();
      }
    } finally {
      await daemon.cleanup();
    }
  });
});
