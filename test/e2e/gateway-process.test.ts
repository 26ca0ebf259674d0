import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../../daemon/paths.js';
import { ADMIN, MAIN, NODE_ARGS, spawnDaemon, type ChildDaemon } from '../helpers/daemon.js';
import { TEST_POSTGRES_URL } from '../helpers/env.js';
import { createTestSchema } from '../helpers/postgres.js';

function run(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000) {
  const r = spawnSync(process.execPath, [...NODE_ARGS, MAIN, ...args], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: timeoutMs,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('keen-gateway executable', function () {
  this.timeout(60_000);

  it('prints help and exits 0', () => {
    const r = run(['--help']);
    expect(r.code).to.equal(0);
    expect(r.stdout).to.include('start').and.include('migrate');
    const sub = run(['start', '--help']);
    expect(sub.code).to.equal(0);
    expect(sub.stdout).to.include('--config');
  });

  it('exits 2 on a usage error', () => {
    const r = run(['start', '--no-such-flag']);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.include('unknown option');
    expect(run(['frobnicate']).code).to.equal(2);
  });

  it('exits 1 naming the key path of an invalid config, without a stack trace', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'keen-e2e-'));
    const file = path.join(dir, 'gateway.yaml');
    writeFileSync(file, 'server:\n  port: "x"\n  extra: true\n');
    const r = run(['start', '--config', file], { KEEN_DATA_DIR: dir });
    expect(r.code).to.equal(1);
    expect(r.stderr).to.include('server.port: must be integer');
    expect(r.stderr).to.include('server.extra: unknown key');
    expect(r.stderr).not.to.match(/\n\s+at /);
  });

  it('fails fast with a clear error on an unreachable database, without leaking its password', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'keen-e2e-'));
    const started = Date.now();
    const r = run(['start'], {
      KEEN_DATA_DIR: dir,
      KEEN_PORT: '0',
      KEEN_DATABASE_URL: 'postgres://keen:hunter2-canary@127.0.0.1:1/keen',
    });
    expect(r.code).to.equal(1);
    expect(Date.now() - started).to.be.below(25_000);
    expect(r.stderr).to.match(/cannot start: .*ECONNREFUSED|cannot start: .*connect/);
    expect(r.stderr).to.include('postgres://keen:***@127.0.0.1:1/keen');
    expect(r.stderr).not.to.include('hunter2-canary');
  });

  it('refuses to start in production without a strong JWT_SECRET', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'keen-e2e-'));
    const env = { KEEN_DATA_DIR: dir, KEEN_PORT: '0', KEEN_ENV: 'production', JWT_SECRET: '' };
    const missing = run(['start'], env);
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.include('JWT_SECRET: is required');
    const short = run(['start'], { ...env, JWT_SECRET: 'too-short-secret' });
    expect(short.code).to.equal(1);
    expect(short.stderr).to.include('at least 32 bytes');
    expect(short.stderr).not.to.include('too-short-secret');
  });

  it('refuses to start in production when the agent sandbox does not work, naming the fix', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'keen-e2e-'));
    // A bwrap that fails like one on a kernel without unprivileged user namespaces.
    const bin = path.join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(
      path.join(bin, 'bwrap'),
      '#!/bin/sh\necho "bwrap: setting up uid map: Permission denied" >&2\nexit 1\n',
      { mode: 0o755 },
    );
    // A data directory others can read is warned about before anything else.
    mkdirSync(path.join(dir, 'data'), { mode: 0o755 });
    chmodSync(path.join(dir, 'data'), 0o755);
    const env = {
      KEEN_DATA_DIR: path.join(dir, 'data'),
      KEEN_PORT: '0',
      KEEN_ENV: 'production',
      JWT_SECRET: 'p'.repeat(48),
      PATH: `${bin}:${process.env.PATH}`,
    };
    const r = run(['start'], env);
    expect(r.code).to.equal(1);
    expect(r.stdout).to.include('the data directory is readable by other users');
    expect(r.stderr)
      .to.include('the agent sandbox does not work')
      .and.include('setting up uid map')
      .and.include('apt-get install bubblewrap');
    expect(r.stderr).to.include('agent.sandbox.mode: none');
  });

  it('creates its database and workspaces private whatever the umask (0077)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'keen-e2e-'));
    const data = path.join(dir, 'data');
    const r = spawnSync(
      '/bin/sh',
      ['-c', `umask 000; exec "${process.execPath}" ${NODE_ARGS.join(' ')} "${MAIN}" migrate`],
      {
        cwd: PROJECT_ROOT,
        env: { ...process.env, KEEN_DATA_DIR: data },
        encoding: 'utf8',
      },
    );
    expect(r.status, r.stderr).to.equal(0);
    expect(statSync(path.join(data, 'keen.db')).mode & 0o077).to.equal(0);
    expect(statSync(data).mode & 0o077).to.equal(0);
  });

  it('`migrate` applies migrations once and then reports up to date', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'keen-e2e-'));
    const first = run(['migrate'], { KEEN_DATA_DIR: dir });
    expect(first.code, first.stderr).to.equal(0);
    expect(first.stdout).to.match(/applied \d+ migration/);
    expect(existsSync(path.join(dir, 'keen.db'))).to.equal(true);
    const second = run(['migrate'], { KEEN_DATA_DIR: dir });
    expect(second.code).to.equal(0);
    expect(second.stdout).to.include('up to date');
  });

  if (TEST_POSTGRES_URL) {
    it('`migrate` works on Postgres too', async () => {
      const schema = await createTestSchema();
      try {
        const r = run(['migrate'], {
          KEEN_DATABASE_URL: schema.url,
          KEEN_DATA_DIR: mkdtempSync(path.join(tmpdir(), 'keen-e2e-')),
        });
        expect(r.code, r.stderr).to.equal(0);
        expect(r.stdout).to.match(/applied \d+ migration/);
      } finally {
        await schema.drop();
      }
    });
  }

  describe('a running daemon', () => {
    let d: ChildDaemon;
    afterEach(async () => d?.cleanup());

    it('generates its JWT secret into the data dir with mode 0600 when none is set', async () => {
      d = await spawnDaemon({ env: { JWT_SECRET: '' } });
      expect((await d.api.get('/health/ready')).status).to.equal(200);
      expect(statSync(path.join(d.home.dataDir, 'jwt-secret')).mode & 0o777).to.equal(0o600);
      expect(d.stdout.join('')).to.include('generated a signing secret');
    });

    it('on SIGTERM lets an in-flight request finish, then exits 0', async () => {
      d = await spawnDaemon();
      // A request whose body is still arriving when the signal comes.
      const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request(
          `${d.url}/v1/slow`,
          { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': '2' } },
          (res) => {
            let body = '';
            res.on('data', (c) => (body += String(c)));
            res.on('end', () => resolve({ status: res.statusCode!, body }));
          },
        );
        req.on('error', reject);
        req.write('{');
        setTimeout(() => {
          d.child.kill('SIGTERM');
          setTimeout(() => req.end('}'), 300);
        }, 200);
      });
      const r = await response;
      expect(r.status).to.equal(404);
      expect(JSON.parse(r.body).error.code).to.equal('NOT_FOUND');
      expect(await d.exited).to.equal(0);
      expect(d.stdout.join('')).to.include('"msg":"stopped"');
    });

    it('exits 0 on SIGINT', async () => {
      d = await spawnDaemon();
      expect(await d.kill('SIGINT')).to.equal(0);
    });

    it('exits 1 when its port is taken', async () => {
      d = await spawnDaemon();
      const dir = mkdtempSync(path.join(tmpdir(), 'keen-e2e-'));
      const r = run(['start'], { KEEN_DATA_DIR: dir, KEEN_PORT: String(d.port) });
      expect(r.code).to.equal(1);
      expect(r.stderr).to.include('address in use');
    });
  });
});

describe('keen-admin executable', () => {
  it('prints help and exits 0', () => {
    const r = spawnSync(process.execPath, [...NODE_ARGS, ADMIN, '--help'], {
      cwd: PROJECT_ROOT,
      encoding: 'utf8',
    });
    expect(r.status).to.equal(0);
    expect(r.stdout).to.include('keen-admin');
  });

  it('exits 2 on an unknown command', () => {
    const r = spawnSync(process.execPath, [...NODE_ARGS, ADMIN, 'nonsense'], {
      cwd: PROJECT_ROOT,
      encoding: 'utf8',
    });
    expect(r.status).to.equal(2);
  });
});
