import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { directoryBytes, processTree, treeMemoryBytes } from '../../../daemon/agents/limit-watch.js';
import { Sandbox, type SandboxSettings } from '../../../daemon/agents/sandbox.js';
import { createLogger } from '../../../daemon/logger.js';

const SETTINGS: SandboxSettings = {
  mode: 'bubblewrap',
  network: 'none',
  allowed_hosts: [],
  workdir: '/workspace',
  read_only_paths: [],
  uid: 65534,
  gid: 65534,
};
const LIMITS = { memory_mb: 256, max_processes: 64, max_file_size_mb: 8, cpu_seconds: 60, workspace_mb: 16 };

describe('agents/sandbox', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'keen-sandbox-unit-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const make = (over: Partial<SandboxSettings> = {}, extra: Partial<ConstructorParameters<typeof Sandbox>[0]> = {}) =>
    new Sandbox({
      settings: { ...SETTINGS, ...over },
      limits: LIMITS,
      command: ['node', '/opt/agent/main.js'],
      runtimeDir: path.join(dir, 'rt'),
      logger: createLogger('silent'),
      hostPath: '/home/daemon/.cargo/bin:/usr/local/bin:/usr/bin:/opt/tool/bin:relative/bin',
      ...extra,
    });

  it('hands bwrap its options on fd 3 (no host path on the command line) and the agent the fixed workdir', () => {
    const w = make({ read_only_paths: ['/opt/tool'] }).wrap(
      '/var/lib/keen/workspaces/ses_x',
      ['node', '/opt/agent/main.js'],
      true,
    );
    expect(w.sandboxed).to.equal(true);
    expect(w.args.slice(0, 3)).to.deep.equal(['--args', '3', '--']);
    expect(w.args.join(' ')).not.to.include('/var/lib/keen');
    const opts = w.fdArgs!.split('\0');
    expect(opts[opts.length - 1]).to.equal('');
    expect(opts).to.include.members(['--unshare-pid', '--unshare-net', '--die-with-parent', '--new-session']);
    const bind = opts.indexOf('--bind');
    expect(opts.slice(bind, bind + 3)).to.deep.equal(['--bind', '/var/lib/keen/workspaces/ses_x', '/workspace']);
    expect(w.workingDirectory).to.equal('/workspace');
    // Only the folders the agent can see stay on its PATH.
    expect(w.env.PATH).to.equal('/usr/local/bin:/usr/bin:/opt/tool/bin');
    expect(w.env.HOME).to.equal('/workspace');
    // The limits are set inside, right before the agent.
    const prlimit = w.args.indexOf('prlimit');
    expect(w.args.slice(prlimit)).to.include.members([
      `--data=${256 * 1024 * 1024}`,
      '--nproc=64',
      `--fsize=${8 * 1024 * 1024}`,
      '--cpu=60:61',
    ]);
    expect(w.args.slice(-2)).to.deep.equal(['node', '/opt/agent/main.js']);
  });

  it('as root drops to the configured uid with setpriv; unprivileged it maps the uid in a user namespace', () => {
    const root = make({ uid: 1234, gid: 4321 }, { isRoot: true }).wrap('/w', ['a'], true);
    expect(root.args.join(' ')).to.include(
      'setpriv --reuid 1234 --regid 4321 --clear-groups --inh-caps=-all --bounding-set=-all --',
    );
    expect(root.fdArgs).not.to.include('--unshare-user');
    const user = make({ uid: 1234, gid: 4321 }, { isRoot: false }).wrap('/w', ['a'], true);
    expect(user.args).not.to.include('setpriv');
    expect(user.fdArgs!.split('\0').join(' ')).to.include(
      '--unshare-user --uid 1234 --gid 4321 --disable-userns --cap-drop ALL',
    );
  });

  it('network allow runs the bridge with the proxy in the environment; host shares the network', () => {
    const allow = make({ network: 'allow' }, { nodePath: '/usr/bin/node' }).wrap('/w', ['agent'], true);
    expect(allow.env.HTTPS_PROXY).to.equal('http://127.0.0.1:3128');
    expect(allow.args.slice(-6)).to.deep.equal([
      '--',
      '/run/keen/node',
      '/run/keen/bridge.mjs',
      '/run/keen/proxy.sock',
      '3128',
      'agent',
    ]);
    const host = make({ network: 'host' }).wrap('/w', ['agent'], true);
    expect(host.fdArgs).not.to.include('--unshare-net');
  });

  it('without an active sandbox only the limits wrap the agent, in the host workspace', () => {
    const w = make({ mode: 'none' }, { setprivPath: null }).wrap('/var/lib/keen/workspaces/ses_x', ['agent', '--flag']);
    expect(w).to.deep.include({
      program: 'prlimit',
      fdArgs: null,
      workingDirectory: '/var/lib/keen/workspaces/ses_x',
      sandboxed: false,
    });
    expect(w.args.slice(-3)).to.deep.equal(['--', 'agent', '--flag']);
  });

  it('without a sandbox, setpriv gives the agent a parent-death signal: it dies with the daemon', () => {
    const w = make({ mode: 'none' }, { setprivPath: '/usr/bin/setpriv' }).wrap('/w', ['agent']);
    expect(w.args.slice(-6)).to.deep.equal(['--', '/usr/bin/setpriv', '--pdeathsig', 'KILL', '--', 'agent']);
  });

  it('probe: mode none is ok and inactive; a missing bwrap fails naming the fix', async () => {
    const none = make({ mode: 'none' });
    expect((await none.probe()).ok).to.equal(true);
    expect(none.active).to.equal(false);
    const missing = make({}, { bwrapPath: path.join(dir, 'no-bwrap') });
    const p = await missing.probe();
    expect(p.ok).to.equal(false);
    expect(p.detail).to.include('is not installed').and.include('apt-get install bubblewrap');
    expect(missing.active).to.equal(false);
  });

  it("probe: an agent file the agent's user cannot read fails with the file named", async function () {
    const real = make({}, {});
    // Needs a working bwrap (CI has one), and root: unprivileged, the agent's uid maps onto the file's owner.
    if (!(await real.probe()).ok || process.getuid?.() !== 0) this.skip();
    const agentDir = path.join(dir, 'agent');
    mkdirSync(agentDir);
    writeFileSync(path.join(agentDir, 'main.js'), '', { mode: 0o600 });
    const sb = new Sandbox({
      settings: SETTINGS,
      limits: LIMITS,
      command: ['/bin/sh', path.join(agentDir, 'main.js')],
      runtimeDir: path.join(dir, 'rt2'),
      logger: createLogger('silent'),
      hostPath: '/usr/bin:/bin',
    });
    const p = await sb.probe();
    expect(p.ok).to.equal(false);
    expect(p.detail)
      .to.include(`agent file ${path.join(agentDir, 'main.js')} not readable inside the sandbox`)
      .and.include('read_only_paths');
    const missing = new Sandbox({
      settings: SETTINGS,
      limits: LIMITS,
      command: ['no-such-agent-xyz'],
      runtimeDir: path.join(dir, 'rt3'),
      logger: createLogger('silent'),
      hostPath: '/usr/bin:/bin',
    });
    expect((await missing.probe()).detail).to.include('agent program no-such-agent-xyz not found inside the sandbox');
  });
});

describe('agents/limit-watch', () => {
  it('measures a folder by its allocated blocks, without following symlinks', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'keen-du-'));
    try {
      mkdirSync(path.join(dir, 'a/b'), { recursive: true });
      writeFileSync(path.join(dir, 'a/b/f'), Buffer.alloc(512 * 1024, 1));
      const before = await directoryBytes(dir);
      expect(before).to.be.at.least(512 * 1024);
      // A symlink to a big tree outside counts as the link only.
      const { symlinkSync } = await import('node:fs');
      symlinkSync('/usr', path.join(dir, 'usr'));
      expect(await directoryBytes(dir)).to.be.below(before + 64 * 1024);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('finds a process tree and its resident memory', async () => {
    const child = spawn('/bin/sh', ['-c', 'sleep 5 & sleep 5 & wait'], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 200));
      const tree = processTree(child.pid!);
      expect(tree[0]).to.equal(child.pid);
      expect(tree.length).to.equal(3);
      expect(treeMemoryBytes(child.pid!)).to.be.greaterThan(0);
    } finally {
      for (const p of processTree(child.pid!).reverse()) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
  });
});
