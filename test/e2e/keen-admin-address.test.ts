import { expect } from 'chai';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { PROJECT_ROOT } from '../../daemon/paths.js';
import { describeStorage } from '../helpers/backends.js';
import { runAdmin as admin, type CliRun } from '../helpers/cli.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { uniqueEmail } from '../helpers/factories.js';

const AGENT = ['node', path.join(PROJECT_ROOT, 'examples/agent/agent.js')];
/** The daemon settings a developer's shell might carry: cleared so each test says what it uses. */
const CLEAN_ENV = {
  KEEN_ENV: '',
  KEEN_DATA_DIR: '',
  KEEN_DATABASE_URL: '',
  KEEN_REDIS_URL: '',
  JWT_SECRET: '',
  JWT_PREVIOUS_SECRETS: '',
};

const checkOf = (r: CliRun, name: string): { name: string; status: string; message: string } =>
  (r.json.checks as Array<{ name: string; status: string; message: string }>).find((c) => c.name === name)!;

describeStorage('keen-admin finds the daemon the way the daemon does', (backend) => {
  let d: TestDaemon;
  let dir: string;
  let port: string;
  let key: string;
  /** The daemon's own config: its data directory, database and port. */
  let daemonConfigFile: string;
  const write = (name: string, config: Record<string, unknown>): string => {
    const file = path.join(dir, name);
    writeFileSync(file, stringify(config));
    return file;
  };

  before(async () => {
    d = await startDaemon({ backend });
    dir = mkdtempSync(path.join(tmpdir(), 'keen-address-'));
    port = new URL(d.url).port;
    daemonConfigFile = write('gateway.yaml', {
      data_dir: d.home.dataDir,
      database: { url: d.home.databaseUrl },
      server: { port: Number(port) },
      agent: { command: AGENT },
    });
  });
  after(async () => {
    await d?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("init with the daemon's config finds it through server.port, names the config and database, and its key works", async () => {
    const r = await admin(['init', '--email', uniqueEmail('ops'), '--config', daemonConfigFile, '--json'], {
      env: CLEAN_ENV,
    });
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stderr).to.include(`config ${daemonConfigFile}`).and.include('database ');
    expect(r.stderr).not.to.include('no daemon answers');
    expect(r.json).to.include({ success: true, config_file: daemonConfigFile });
    expect(r.json.database).to.be.a('string');
    if (backend === 'sqlite') expect(r.json.database).to.include(d.home.dataDir);
    key = r.json.key;
  });

  it('KEEN_PORT, KEEN_HOST/KEEN_PORT and KEEN_CONFIG each point keen-admin at the daemon; KEEN_URL and --url win over them', async () => {
    const env = { ...CLEAN_ENV, KEEN_API_KEY: key };
    const settings: Array<Record<string, string>> = [
      { KEEN_PORT: port },
      { KEEN_HOST: '127.0.0.1', KEEN_PORT: port },
      { KEEN_HOST: '0.0.0.0', KEEN_PORT: port },
      { KEEN_CONFIG: daemonConfigFile },
    ];
    for (const extra of settings) {
      const r = await admin(['tenants', 'list', '--json'], { env: { ...env, ...extra } });
      expect(r.code, `${JSON.stringify(extra)}: ${r.stderr}`).to.equal(0);
    }
    expect(
      (await admin(['tenants', 'list', '--json'], { env: { ...env, KEEN_PORT: port, KEEN_URL: 'http://127.0.0.1:9' } }))
        .code,
    ).to.equal(3);
    expect(
      (await admin(['tenants', 'list', '--json', '--url', 'http://127.0.0.1:9'], { env: { ...env, KEEN_PORT: port } }))
        .code,
    ).to.equal(3);
  });

  it("doctor --config compares clocks with the daemon at the config's port, and fails (exit 1) when no daemon answers", async () => {
    const env = { ...CLEAN_ENV, JWT_SECRET: d.home.jwtSecret };
    const r = await admin(['doctor', '--config', daemonConfigFile, '--json'], { env });
    expect(checkOf(r, 'daemon'), r.stderr).to.include({ status: 'ok' });
    expect(checkOf(r, 'daemon').message).to.include(d.url);
    expect(checkOf(r, 'clock').message).to.include(`daemon at ${d.url} is within`);

    const gone = write('gone.yaml', {
      data_dir: d.home.dataDir,
      database: { url: d.home.databaseUrl },
      server: { port: 9 },
      agent: { command: AGENT },
    });
    const down = await admin(['doctor', '--config', gone, '--json'], { env });
    expect(down.code).to.equal(1);
    expect(checkOf(down, 'daemon')).to.include({ status: 'fail' });
    expect(checkOf(down, 'daemon').message).to.include('http://127.0.0.1:9').and.include('no daemon answers');
    const skipped = await admin(['doctor', '--config', gone, '--no-daemon', '--json'], { env });
    expect(skipped.json.checks.map((c: { name: string }) => c.name)).not.to.include('daemon');
  });

  it('init refuses (exit 1, DATABASE_MISMATCH) when the daemon that answers serves another database, creating nothing', async () => {
    const otherData = path.join(dir, 'other-data');
    const other = write('other.yaml', { data_dir: otherData, agent: { command: AGENT } });
    const r = await admin(['init', '--email', uniqueEmail('lost'), '--config', other, '--url', d.url], {
      env: CLEAN_ENV,
    });
    expect(r.code, r.stderr).to.equal(1);
    expect(r.stderr)
      .to.include('DATABASE_MISMATCH')
      .and.include(`database sqlite:${path.join(otherData, 'keen.db')}`);
    expect(r.stdout).not.to.match(/ak_live_/);
    expect(existsSync(path.join(otherData, 'keen.db'))).to.equal(false);

    // An existing database that is not the daemon's: refused as well.
    const made = await admin(
      ['init', '--email', uniqueEmail('solo'), '--config', other, '--url', 'http://127.0.0.1:9'],
      { env: CLEAN_ENV },
    );
    expect(made.code, made.stderr).to.equal(0);
    expect(made.stderr).to.include('no daemon answers at http://127.0.0.1:9');
    expect(made.stdout).to.include(`in sqlite:${path.join(otherData, 'keen.db')}`);
    const again = await admin(['init', '--email', uniqueEmail('lost2'), '--config', other, '--url', d.url], {
      env: CLEAN_ENV,
    });
    expect(again.code).to.equal(1);
    expect(again.stderr).to.include('DATABASE_MISMATCH');
  });
});

describe('keen-admin usage errors', () => {
  const env = { KEEN_API_KEY: 'ak_live_notused', KEEN_URL: 'http://127.0.0.1:9' };

  it('--expires 90 is a usage error that says to use 90d, 12h or a date; a past date too', async () => {
    const r = await admin(['keys', 'create', '--user', 'a@example.com', '--name', 'ci', '--expires', '90'], { env });
    expect(r.code).to.equal(2);
    expect(r.stderr).to.include('use 90d, 12h, 30m or a date');
    const past = await admin(['keys', 'create', '--user', 'a@example.com', '--name', 'ci', '--expires', '2020-01-01'], {
      env,
    });
    expect(past.code).to.equal(2);
    expect(past.stderr).to.include('in the past');
  });

  it('an unknown scope is a usage error listing the allowed ones', async () => {
    const r = await admin(['keys', 'create', '--user', 'a@example.com', '--name', 'ci', '--scopes', 'agents:exec'], {
      env,
    });
    expect(r.code).to.equal(2);
    expect(r.stderr)
      .to.include('"agents:exec"')
      .and.include('agents:execute, sessions:read, credits:read, keys:manage, admin');
  });

  it('--url notaurl is a usage error (exit 2, INVALID_URL), also from KEEN_URL', async () => {
    const r = await admin(['tenants', 'list', '--url', 'notaurl'], { env });
    expect(r.code).to.equal(2);
    expect(r.stderr).to.include('INVALID_URL').and.include('--url: "notaurl" is not a daemon URL');
    expect(r.stderr).not.to.include('ERR_INVALID_URL');
    const e = await admin(['tenants', 'list'], { env: { ...env, KEEN_URL: 'ftp://x' } });
    expect(e.code).to.equal(2);
    expect(e.stderr).to.include('KEEN_URL: "ftp://x"');
  });

  it('with --json, errors carry success: false and a specific code (NO_API_KEY)', async () => {
    const r = await admin(['tenants', 'list', '--json'], { env: { KEEN_URL: 'http://127.0.0.1:9' } });
    expect(r.code).to.equal(2);
    const body = JSON.parse(r.stderr);
    expect(body.success).to.equal(false);
    expect(body.error.code).to.equal('NO_API_KEY');
    const bad = JSON.parse(
      (await admin(['keys', 'create', '--user', 'a', '--name', 'b', '--scopes', 'nope', '--json'], { env })).stderr,
    );
    expect(bad).to.deep.include({ success: false });
    expect(bad.error.code).to.equal('INVALID_ARGUMENT');
  });
});
