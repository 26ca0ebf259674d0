/**
 * The agent sandbox, attacked from inside: a hostile agent (test/fixtures/hostile-agent.mjs)
 * tries every escape of docs/SANDBOX.md against a real daemon, on SQLite and on
 * Postgres + Redis. Each attempt must fail, the session must still end with the
 * right status and charge, and the ledger must verify.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../../../daemon/paths.js';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildUser, type TestUser } from '../../helpers/factories.js';
import { execute, expectLedgerClean, grant, waitForEnd } from '../../helpers/sessions.js';

const HOSTILE = path.join(PROJECT_ROOT, 'test/fixtures/hostile-agent.mjs');

interface Attempt {
  ok: boolean;
  code?: string;
  got?: unknown;
  status?: number;
}

/** A folder holding a copy of the hostile agent and the targets it attacks (listed in read_only_paths). */
function agentDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'keen-hostile-'));
  // Bound as it is: the agent's uid (another user when the daemon is root) must be able to read it.
  chmodSync(dir, 0o755);
  copyFileSync(HOSTILE, path.join(dir, 'hostile-agent.mjs'));
  return dir;
}

/** Host processes whose command line holds `mark`. */
function processesNamed(mark: string): string[] {
  try {
    return execFileSync('pgrep', ['-f', mark], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

async function runHostile(d: TestDaemon, u: TestUser, vision: string) {
  const r = await execute(d, u, vision, { maxIterations: 2, costBudget: 2 });
  expect(r.status, r.text).to.equal(200);
  const end = await waitForEnd(d, u, r.body.session.id, 30_000);
  const workspace = path.join(d.config.workspaces.root, end.id);
  const reportFile = path.join(workspace, 'report.json');
  const report = existsSync(reportFile) ? JSON.parse(readFileSync(reportFile, 'utf8')) : null;
  return { end, workspace, report };
}

function skipWithoutSandbox(d: TestDaemon, ctx: Mocha.Context): void {
  // CI installs bubblewrap (.ci/run) and fails rather than skipping; a laptop without it skips, loudly.
  if (!d.container.sandbox.active) {
    if (process.env.CI === 'true')
      throw new Error(`the sandbox does not work here: ${d.container.sandbox.probeResult.detail}`);
    ctx.skip();
  }
}

describeStorage('agent sandbox: a hostile agent reaches its workspace and nothing else', (backend) => {
  let d: TestDaemon;
  let dir: string;
  let u: TestUser;

  before(async function () {
    dir = agentDir();
    d = await startDaemon({
      backend,
      shared: backend === 'postgres' ? 'redis' : 'memory',
      config: {
        agent: {
          command: ['node', path.join(dir, 'hostile-agent.mjs')],
          sandbox: { read_only_paths: [dir] },
          limits: { memory_mb: 512, workspace_mb: 20, max_file_size_mb: 5 },
          kill_grace_seconds: 1,
        },
      },
    });
    skipWithoutSandbox(d, this);
    u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 100);
  });
  after(async () => {
    await d?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("cannot read the secrets, the database, the daemon's environment or a sibling workspace, write outside its workspace, or connect anywhere", async () => {
    // A sibling session leaves a secret in its workspace.
    const sibling = await runHostile(d, u, 'a first harmless run');
    expect(sibling.end.status).to.equal('completed');
    writeFileSync(path.join(sibling.workspace, 'secret.txt'), 'sibling secret');

    const dataDir = d.config.data_dir;
    writeFileSync(path.join(dataDir, 'jwt-secret'), 'planted-jwt-secret', { mode: 0o600 });
    writeFileSync(path.join(dataDir, 'audit-signing-key.pem'), 'planted-audit-key', { mode: 0o600 });
    const port = Number(new URL(d.url).port);
    const files: Record<string, string> = {
      jwt_secret: path.join(dataDir, 'jwt-secret'),
      audit_key: path.join(dataDir, 'audit-signing-key.pem'),
      sibling_workspace: path.join(sibling.workspace, 'secret.txt'),
      daemon_home: path.join(process.env.HOME ?? '/root', '.bashrc'),
      host_tmp: path.join(tmpdir()),
    };
    if (backend === 'sqlite') {
      files.database = d.config.database.url.slice('sqlite:'.length);
      files.database_wal = `${files.database}-wal`;
    }
    writeFileSync(
      path.join(dir, 'targets.json'),
      JSON.stringify({
        files,
        daemonPid: process.pid,
        writes: {
          data_dir: path.join(dataDir, 'pwned'),
          usr: '/usr/pwned',
          etc: '/etc/pwned',
          sibling: path.join(sibling.workspace, 'pwned'),
        },
        ports: { daemon: port, postgres: 5432, redis: 6379 },
        sockets: { postgres: '/var/run/postgresql/.s.PGSQL.5432', proxy: path.join(dataDir, 'sandbox', 'proxy.sock') },
        tmpMarker: `keen-hostile-${path.basename(dataDir)}`,
      }),
    );

    const { end, report } = await runHostile(d, u, 'try to escape [escape]');
    expect(end.status, end.end_reason).to.equal('completed');
    expect(end.sandboxed).to.equal(true);
    expect(report, 'the agent wrote its report').to.be.an('object');
    expect(report.targets, 'targets.json is readable through read_only_paths').to.equal(true);

    // Files of the host do not exist for it: not "permission denied", absent.
    for (const [name, got] of Object.entries(report.reads as Record<string, Attempt>)) {
      if (name === 'proc_1_cmdline') continue;
      expect(got.ok, `${name}: ${JSON.stringify(got)}`).to.equal(false);
    }
    for (const name of Object.keys(files)) {
      expect(report.reads[name].code, name).to.equal(name === 'host_tmp' ? 'EISDIR' : 'ENOENT');
    }
    // Its own /proc: its parent is the sandbox's init, the daemon is not there.
    expect(report.ppid).to.be.lessThan(10);
    expect(report.reads.proc_daemon_environ.code).to.equal('ENOENT');
    // The sandbox's PID 1 shows no host path: neither the workspace, the session id nor the data directory.
    const cmdline = String(report.reads.proc_1_cmdline.got ?? '');
    for (const leak of [end.id, dataDir, d.config.workspaces.root]) expect(cmdline).not.to.include(leak);
    expect(report.workingDirectory).to.equal('/workspace');
    expect(report.cwd).to.equal('/workspace');
    expect(report.uid).to.not.equal(process.getuid!());
    // No capabilities, none to gain: set-uid binaries do nothing.
    expect(report.capEff).to.equal('0000000000000000');
    expect(report.noNewPrivs).to.equal('1');

    for (const [name, got] of Object.entries(report.writes as Record<string, Attempt>)) {
      if (name === 'tmp' || name === 'workspace') expect(got.ok, name).to.equal(true);
      else expect(got.ok, `${name}: ${JSON.stringify(got)}`).to.equal(false);
    }
    expect(existsSync(path.join(dataDir, 'pwned'))).to.equal(false);
    expect(existsSync(path.join(sibling.workspace, 'pwned'))).to.equal(false);
    // Its /tmp is private: nothing reached the host's.
    expect(existsSync(path.join(tmpdir(), `keen-hostile-${path.basename(dataDir)}`))).to.equal(false);

    for (const [name, got] of Object.entries(report.connects as Record<string, Attempt>)) {
      expect(got.ok, `connect to ${name}: ${JSON.stringify(got)}`).to.equal(false);
    }
    for (const [name, got] of Object.entries(report.unix as Record<string, Attempt>)) {
      expect(got.ok, `unix socket ${name}: ${JSON.stringify(got)}`).to.equal(false);
    }
    // Only the variables the runner builds reach it.
    expect(report.env).to.include.members(['HOME', 'PATH']);
    for (const name of report.env as string[]) expect(name).not.to.match(/JWT|KEEN_|DATABASE|REDIS/);

    // Charged exactly what it reported; nothing held.
    expect(end.final_cost).to.be.greaterThan(0);
    expect((await d.container.ledger.balance(u.user.id)).reserved).to.equal(0);
    await expectLedgerClean(d);
  });

  it('leaves nothing running: a setsid grandchild dies with the sandbox', async () => {
    const mark = `keen-grandchild-${Date.now().toString(36)}`;
    const { end, report } = await runHostile(d, u, `leave a process behind [grandchild:${mark}]`);
    expect(end.status).to.equal('completed');
    expect(report.grandchild).to.be.a('number');
    // The sandbox is gone once the agent is: give the kernel a moment to reap.
    for (let i = 0; i < 20 && processesNamed(mark).length > 0; i += 1) await new Promise((r) => setTimeout(r, 100));
    expect(processesNamed(mark)).to.deep.equal([]);
  });

  it('a cancel gives the agent SIGTERM first, then kills the sandbox after the grace', async () => {
    const r = await execute(d, u, 'hold on [trap-sigterm] [linger:20000]', { maxIterations: 2, costBudget: 2 });
    expect(r.status, r.text).to.equal(200);
    const id = r.body.session.id;
    const workspace = path.join(d.config.workspaces.root, id);
    for (let i = 0; i < 100 && !existsSync(path.join(workspace, 'report.json')); i++)
      await new Promise((res) => setTimeout(res, 50));
    const c = await d.api.post(`/v1/sessions/${id}/cancel`, {}, { token: u.token });
    expect(c.status, c.text).to.equal(200);
    const end = await waitForEnd(d, u, id);
    expect(end.status).to.equal('cancelled');
    // The agent's own handler ran (signalled inside the sandbox, not only killed with it).
    expect(readFileSync(path.join(workspace, 'sigterm.txt'), 'utf8')).to.equal('got it');
    await expectLedgerClean(d);
  });

  it('stops an agent whose processes together pass the memory limit: limit_memory, charged what it reported', async () => {
    const { end } = await runHostile(d, u, 'eat memory [memory:200:4] [linger:20000]');
    expect(end.status).to.equal('failed');
    expect(end.end_reason).to.equal('limit_memory');
    expect(end.final_cost).to.be.greaterThan(0);
    expect((await d.container.ledger.balance(u.user.id)).reserved).to.equal(0);
    await expectLedgerClean(d);
  });

  it('refuses one allocation past the memory limit inside the agent (the kernel limit)', async () => {
    const { end, report } = await runHostile(d, u, 'allocate too much [alloc:700]');
    expect(end.status).to.equal('completed');
    expect(report.alloc.ok, JSON.stringify(report.alloc)).to.equal(false);
  });

  it('stops an agent that fills its workspace past the limit: limit_workspace', async () => {
    const { end, workspace } = await runHostile(d, u, 'fill the disk [fill:30] [linger:20000]');
    expect(end.status).to.equal('failed');
    expect(end.end_reason).to.equal('limit_workspace');
    expect(statSync(workspace).isDirectory()).to.equal(true);
    await expectLedgerClean(d);
  });

  it('refuses a file past the largest file size', async () => {
    const { end, report } = await runHostile(d, u, 'write a big file [bigfile:8]');
    expect(end.status).to.equal('completed');
    expect(report.bigfile).to.deep.include({ ok: false, code: 'EFBIG' });
  });
});

describe('agent sandbox: limits that end the agent by signal, and network: allow', () => {
  let dir: string;
  before(() => {
    dir = agentDir();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** A daemon running `script` as its agent under `limits`; resolves with the session's end and its stderr log. */
  async function runShell(ctx: Mocha.Context, script: string, limits: Record<string, number>) {
    const d = await startDaemon({ config: { agent: { command: ['/bin/sh', '-c', script], limits } } });
    try {
      skipWithoutSandbox(d, ctx);
      const u = await buildUser(d, { tier: 'team' });
      await grant(d, u, 10);
      const r = await execute(d, u, 'run the script', { maxIterations: 1 });
      expect(r.status, r.text).to.equal(200);
      const end = await waitForEnd(d, u, r.body.session.id);
      await expectLedgerClean(d);
      const stderr = readFileSync(path.join(d.config.workspaces.root, end.id, '.keen', 'agent.stderr.log'), 'utf8');
      return { end, stderr };
    } finally {
      await d.stop();
    }
  }

  it('names the CPU limit when the kernel ends the agent (SIGXCPU): limit_cpu', async function () {
    const { end } = await runShell(this, 'while :; do :; done', { cpu_seconds: 1 });
    expect(end).to.include({ status: 'failed', end_reason: 'limit_cpu', sandboxed: true });
  });

  it('refuses processes past max_processes inside the agent', async function () {
    const { end, stderr } = await runShell(this, 'i=0; while [ $i -lt 60 ]; do sleep 3 & i=$((i+1)); done; wait', {
      max_processes: 16,
    });
    expect(end.status).to.equal('failed');
    expect(stderr).to.match(/[Cc]annot fork|Resource temporarily unavailable/);
  });

  it('names the file size limit when it kills the agent (SIGXFSZ): limit_file_size', async function () {
    const d = await startDaemon({
      config: {
        agent: { command: ['/bin/sh', '-c', 'head -c 10000000 /dev/zero > big.bin'], limits: { max_file_size_mb: 1 } },
      },
    });
    try {
      skipWithoutSandbox(d, this);
      const u = await buildUser(d, { tier: 'team' });
      await grant(d, u, 10);
      const r = await execute(d, u, 'write a big file', { maxIterations: 1 });
      expect(r.status, r.text).to.equal(200);
      const end = await waitForEnd(d, u, r.body.session.id);
      expect(end).to.include({ status: 'failed', end_reason: 'limit_file_size', sandboxed: true });
      await expectLedgerClean(d);
    } finally {
      await d.stop();
    }
  });

  it('without a working bubblewrap (not production): starts, warns at start and at every execute, records sandboxed false', async () => {
    const bin = mkdtempSync(path.join(tmpdir(), 'keen-fake-bwrap-'));
    writeFileSync(
      path.join(bin, 'bwrap'),
      '#!/bin/sh\necho "bwrap: setting up uid map: Permission denied" >&2\nexit 1\n',
      { mode: 0o755 },
    );
    const d = await startDaemon({ path: `${bin}:${process.env.PATH}` });
    try {
      expect(d.container.sandbox.active).to.equal(false);
      expect(d.logs.join('')).to.include('the agent sandbox does not work').and.include('setting up uid map');
      const u = await buildUser(d, { tier: 'team' });
      await grant(d, u, 10);
      for (let i = 0; i < 2; i++) {
        const r = await execute(d, u, 'Build a small todo application', { maxIterations: 1 });
        const end = await waitForEnd(d, u, r.body.session.id);
        expect(end).to.include({ status: 'completed', sandboxed: false });
      }
      expect(d.logs.filter((l) => l.includes('agent runs WITHOUT the sandbox'))).to.have.length(2);
    } finally {
      await d.stop();
      rmSync(bin, { recursive: true, force: true });
    }
  });

  it('warns at start when network is host', async function () {
    const d = await startDaemon({ config: { agent: { sandbox: { network: 'host' } } } });
    try {
      skipWithoutSandbox(d, this);
      expect(d.logs.join('')).to.include('agent.sandbox.network is host');
    } finally {
      await d.stop();
    }
  });

  it('with network allow, reaches nothing but the listed hosts, and never a loopback address through the proxy', async function () {
    const d = await startDaemon({
      config: {
        agent: {
          command: ['node', path.join(dir, 'hostile-agent.mjs')],
          sandbox: { network: 'allow', allowed_hosts: ['localhost', 'api.keen.test'], read_only_paths: [dir] },
        },
      },
    });
    try {
      skipWithoutSandbox(d, this);
      const port = Number(new URL(d.url).port);
      writeFileSync(
        path.join(dir, 'targets.json'),
        JSON.stringify({
          ports: { daemon: port, postgres: 5432, redis: 6379 },
          proxyTargets: ['not-listed.example.com:443', `localhost:${port}`, `127.0.0.1:${port}`],
        }),
      );
      const u = await buildUser(d, { tier: 'team' });
      await grant(d, u, 10);
      const { end, report } = await runHostile(d, u, 'go out [escape] [proxy]');
      expect(end.status, end.end_reason).to.equal('completed');
      expect(report.env).to.include.members(['HTTPS_PROXY', 'HTTP_PROXY']);
      // The proxy answers (the bridge works), and refuses each of them.
      for (const [target, got] of Object.entries(report.proxy as Record<string, Attempt>)) {
        expect(got, target).to.deep.equal({ ok: true, status: 403 });
      }
      // Direct connections still go nowhere.
      for (const [name, got] of Object.entries(report.connects as Record<string, Attempt>))
        expect(got.ok, name).to.equal(false);
      await expectLedgerClean(d);
    } finally {
      await d.stop();
    }
  });
});
