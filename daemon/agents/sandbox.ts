/**
 * The operating-system sandbox every agent runs in (docs/SANDBOX.md).
 *
 * An agent is whatever program `agent.command` names, and a coding agent runs
 * whatever a vision asks of it. The walls therefore have to be the kernel's:
 * bubblewrap puts the agent in its own mount, PID, IPC, UTS and (by default)
 * network namespace, under a user id that is not the daemon's, with no
 * capabilities and no_new_privs. Inside, it sees read-only system paths, a few
 * files of /etc, its workspace at a fixed path, a private /tmp, a minimal /dev
 * and a /proc of its own PID namespace; never the data directory, another
 * workspace or the daemon's home. Resource limits are rlimits set inside the
 * sandbox (so, under a user namespace, they count this agent's processes only).
 *
 * Two ways in, chosen by who runs the daemon:
 * - an unprivileged daemon: bwrap creates a user namespace; the agent's uid
 *   inside is `agent.sandbox.uid`, mapped onto the daemon's own uid outside.
 * - a daemon running as root: no user namespace (it would map the agent onto
 *   root); bwrap keeps only the capabilities needed to switch ids, and setpriv
 *   drops to `agent.sandbox.uid`/`gid`, clearing every capability.
 */
import { spawn } from 'node:child_process';
import {
  accessSync,
  chmodSync,
  chownSync,
  constants as fsConstants,
  existsSync,
  lstatSync,
  mkdirSync,
  readlinkSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import type { Logger } from '../logger.js';
import { EGRESS_BRIDGE_SOURCE } from './egress-proxy.js';

/** `agent.sandbox.mode`. */
export type SandboxMode = 'bubblewrap' | 'none';
/** `agent.sandbox.network`. */
export type SandboxNetwork = 'none' | 'allow' | 'host';

/** `agent.limits`, in the units of the config. */
export interface AgentLimits {
  memory_mb: number;
  max_processes: number;
  max_file_size_mb: number;
  cpu_seconds: number;
  workspace_mb: number;
}

/** `agent.sandbox`, as configured. */
export interface SandboxSettings {
  mode: SandboxMode;
  network: SandboxNetwork;
  allowed_hosts: string[];
  workdir: string;
  read_only_paths: string[];
  uid: number;
  gid: number;
}

export interface SandboxOptions {
  settings: SandboxSettings;
  limits: AgentLimits;
  /** The agent's argv (`agent.command`): absolute paths in it are made visible read-only. */
  command: string[];
  /** A private folder of the daemon (`<data_dir>/sandbox`) for the generated passwd, the bridge and the proxy socket. */
  runtimeDir: string;
  logger: Logger;
  /** Defaults: `bwrap` on PATH, the daemon's own uid, `process.execPath`. Tests override them. */
  bwrapPath?: string;
  /** setpriv for an unsandboxed agent's parent-death signal; default: found on `hostPath`; null: none. */
  setprivPath?: string | null;
  isRoot?: boolean;
  nodePath?: string;
  /** The PATH agents get outside the sandbox; inside, only its folders the agent can see are kept. */
  hostPath?: string;
}

/** What the runner spawns for one agent. */
export interface WrappedCommand {
  program: string;
  /** Arguments given on the command line. */
  args: string[];
  /**
   * bwrap's options, handed to it through file descriptor 3 (`--args 3`), NUL-separated,
   * so that the sandbox's own PID 1 shows no host path (workspace, data directory) in /proc/1/cmdline.
   */
  fdArgs: string | null;
  /** The agent's working directory as the agent sees it. */
  workingDirectory: string;
  /** Variables added to the agent's environment (HOME, and the proxy in `allow` mode). */
  env: Record<string, string>;
  sandboxed: boolean;
}

/** Result of the start-up check. */
export interface SandboxProbe {
  ok: boolean;
  /** What was checked, or why it failed and how to fix it. */
  detail: string;
}

/** Where the egress bridge listens inside the agent's network namespace. */
export const PROXY_PORT = 3128;
/** Where the daemon's files appear inside the sandbox. */
const RUN_DIR = '/run/keen';
const MIB = 1024 * 1024;

/** System folders a program needs; each is bound read-only, or recreated as the symlink it is on the host. */
const SYSTEM_PATHS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];
/** The files of /etc that programs read: resolver, TLS roots, dynamic linker, time zone, alternatives. */
const ETC_PATHS = [
  '/etc/resolv.conf',
  '/etc/hosts',
  '/etc/nsswitch.conf',
  '/etc/host.conf',
  '/etc/gai.conf',
  '/etc/ssl',
  '/etc/ca-certificates',
  '/etc/ca-certificates.conf',
  '/etc/pki',
  '/etc/alternatives',
  '/etc/ld.so.cache',
  '/etc/ld.so.conf',
  '/etc/ld.so.conf.d',
  '/etc/localtime',
  '/etc/timezone',
  '/etc/mime.types',
];

/** The fix an operator needs, named in every failed probe. */
const FIX =
  'install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) and allow unprivileged user namespaces ' +
  '(sysctl kernel.unprivileged_userns_clone=1, or under AppArmor kernel.apparmor_restrict_unprivileged_userns=0), ' +
  "or set agent.sandbox.mode: none and accept that agents can read the gateway's secrets";

/** The daemon refuses to start: the sandbox does not work and `env` is production. */
export class SandboxUnavailableError extends Error {
  override readonly name = 'SandboxUnavailableError';
}

export class Sandbox {
  readonly settings: SandboxSettings;
  readonly limits: AgentLimits;
  private readonly bwrap: string;
  /** setpriv, to give an unsandboxed agent a parent-death signal; null when the host has none. */
  private readonly setpriv: string | null;
  private readonly isRoot: boolean;
  private readonly nodePath: string;
  /** Set by `probe()`: true once a trivial command ran inside the sandbox. */
  private working = false;
  private lastProbe: SandboxProbe = { ok: false, detail: 'not checked yet' };

  constructor(private readonly opts: SandboxOptions) {
    this.settings = opts.settings;
    this.limits = opts.limits;
    // Looked up on the daemon's PATH once: spawn would search the agent's (filtered) PATH instead.
    this.bwrap = opts.bwrapPath ?? findOnPath('bwrap', opts.hostPath) ?? 'bwrap';
    this.setpriv = opts.setprivPath !== undefined ? opts.setprivPath : findOnPath('setpriv', opts.hostPath);
    this.isRoot = opts.isRoot ?? process.getuid?.() === 0;
    this.nodePath = opts.nodePath ?? process.execPath;
  }

  /** True when agents run inside bubblewrap: configured so and the start-up probe passed. */
  get active(): boolean {
    return this.settings.mode === 'bubblewrap' && this.working;
  }

  /** The outcome of the last probe (for `keen-admin doctor` and the start-up log). */
  get probeResult(): SandboxProbe {
    return this.lastProbe;
  }

  /** The socket the egress proxy listens on (`network: allow`). */
  get proxySocket(): string {
    return path.join(this.opts.runtimeDir, 'proxy.sock');
  }

  /**
   * Writes the runtime files and runs `true` in a sandbox built exactly like an
   * agent's (and checks that the agent's program can be found inside). Never throws.
   */
  async probe(): Promise<SandboxProbe> {
    if (this.settings.mode === 'none') {
      this.working = false;
      this.lastProbe = { ok: true, detail: 'agent.sandbox.mode is none: agents run without a sandbox' };
      return this.lastProbe;
    }
    try {
      this.writeRuntimeFiles();
    } catch (err) {
      this.lastProbe = { ok: false, detail: `cannot prepare ${this.opts.runtimeDir}: ${(err as Error).message}` };
      return this.lastProbe;
    }
    const program = this.opts.command[0] ?? 'true';
    // The program must be found, and every file the command names readable, as the agent's user sees them.
    const q = (v: string) => `'${v.replace(/'/g, `'\\''`)}'`;
    const say = (what: string) => `{ echo ${q(`${what} inside the sandbox`)} >&2; exit 127; }`;
    const checks = [
      program.includes('/')
        ? `test -x ${q(program)} || ${say(`agent program ${program} not found or not executable`)}`
        : `command -v ${q(program)} >/dev/null || ${say(`agent program ${program} not found`)}`,
    ];
    for (const part of this.opts.command.slice(1)) {
      if (path.isAbsolute(part) && existsSync(part))
        checks.push(`test -r ${q(part)} || ${say(`agent file ${part} not readable`)}`);
    }
    const wrapped = this.wrap(null, ['/bin/sh', '-c', checks.join('\n')], true);
    const outcome = await runOnce(wrapped, { PATH: '/usr/local/bin:/usr/bin:/bin' }, 10_000);
    if (outcome.code === 0) {
      this.working = true;
      this.lastProbe = {
        ok: true,
        detail: `bubblewrap works (${this.isRoot ? `root: agents run as uid ${this.settings.uid}` : 'user namespace'}; network ${this.settings.network})`,
      };
    } else {
      this.working = false;
      const said = outcome.stderr.trim().split('\n').slice(-2).join(' ').slice(0, 300);
      const notFound = outcome.code === 127 && said.includes('inside the sandbox');
      this.lastProbe = {
        ok: false,
        detail: notFound
          ? `${said}; put it under /usr or list its folder in agent.sandbox.read_only_paths${this.isRoot ? `, readable by uid ${this.settings.uid}` : ''}`
          : `bubblewrap did not run (${outcome.error ?? `exit ${outcome.code}`}${said ? `: ${said}` : ''}); ${FIX}`,
      };
    }
    return this.lastProbe;
  }

  /**
   * Gives the workspace to the agent's user when the daemon is root (the agent
   * runs as another uid and must be able to write it). A no-op otherwise.
   */
  prepareWorkspace(workspace: string): void {
    if (this.active && this.isRoot) chownSync(workspace, this.settings.uid, this.settings.gid);
  }

  /**
   * The command that runs `argv` for the workspace `workspace`: inside bubblewrap
   * when the sandbox is active, else only under the resource limits.
   * `workspace` is null for the probe (no workspace is bound).
   */
  wrap(workspace: string | null, argv: string[], force = false): WrappedCommand {
    const limited = [...this.rlimitArgs(), '--', ...argv];
    if (!force && !this.active) {
      // No sandbox to die with the daemon: the agent gets SIGKILL when the daemon dies (its
      // children do not: the next start stops what is left, see ProcessRunner.stopOrphans).
      const orphanProof = this.setpriv
        ? [...this.rlimitArgs(), '--', this.setpriv, '--pdeathsig', 'KILL', '--', ...argv]
        : limited;
      return {
        program: 'prlimit',
        args: orphanProof,
        fdArgs: null,
        workingDirectory: workspace ?? '/',
        env: workspace ? { HOME: workspace } : {},
        sandboxed: false,
      };
    }
    const s = this.settings;
    const b: string[] = [];
    if (this.isRoot) {
      b.push(
        '--cap-drop',
        'ALL',
        '--cap-add',
        'CAP_SETUID',
        '--cap-add',
        'CAP_SETGID',
        '--cap-add',
        'CAP_SETPCAP',
        '--cap-add',
        'CAP_DAC_READ_SEARCH',
      );
    } else {
      b.push('--unshare-user', '--uid', String(s.uid), '--gid', String(s.gid), '--disable-userns', '--cap-drop', 'ALL');
    }
    b.push('--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup-try');
    if (s.network !== 'host') b.push('--unshare-net');
    b.push('--die-with-parent', '--new-session', '--hostname', 'keen-agent');
    for (const p of SYSTEM_PATHS) {
      const link = symlinkTarget(p);
      if (link !== null) b.push('--symlink', link, p);
      else if (existsSync(p)) b.push('--ro-bind', p, p);
    }
    b.push('--proc', '/proc', '--dev', '/dev');
    b.push(
      '--size',
      String(Math.max(16, Math.min(this.limits.memory_mb, 1024)) * MIB),
      '--perms',
      '1777',
      '--tmpfs',
      '/tmp',
    );
    // Folders bwrap makes for mount points are private to root by default: the agent could not traverse /etc.
    // Made after /tmp is mounted, so that a read-only path under /tmp gets readable parents too.
    const etc = ETC_PATHS.filter((p) => existsSync(p));
    const visible = this.visiblePaths();
    const dests = ['/etc/passwd', ...etc, ...visible, s.workdir, ...(s.network === 'allow' ? [`${RUN_DIR}/node`] : [])];
    for (const dir of ancestorsOf(dests)) b.push('--perms', '0755', '--dir', dir);
    for (const p of etc) b.push('--ro-bind-try', p, p);
    b.push('--ro-bind', path.join(this.opts.runtimeDir, 'passwd'), '/etc/passwd');
    b.push('--ro-bind', path.join(this.opts.runtimeDir, 'group'), '/etc/group');
    for (const p of visible) b.push('--ro-bind-try', p, p);
    const env: Record<string, string> = { HOME: s.workdir, TMPDIR: '/tmp', PATH: this.sandboxPath() };
    let inner = argv;
    if (s.network === 'allow') {
      // -try: `keen-admin doctor` probes without the daemon's proxy running.
      b.push('--ro-bind-try', this.proxySocket, `${RUN_DIR}/proxy.sock`);
      b.push('--ro-bind', path.join(this.opts.runtimeDir, 'bridge.mjs'), `${RUN_DIR}/bridge.mjs`);
      b.push('--ro-bind', this.nodePath, `${RUN_DIR}/node`);
      inner = [`${RUN_DIR}/node`, `${RUN_DIR}/bridge.mjs`, `${RUN_DIR}/proxy.sock`, String(PROXY_PORT), ...argv];
      const proxy = `http://127.0.0.1:${PROXY_PORT}`;
      Object.assign(env, {
        HTTPS_PROXY: proxy,
        HTTP_PROXY: proxy,
        https_proxy: proxy,
        http_proxy: proxy,
        NO_PROXY: '',
        no_proxy: '',
      });
    }
    if (workspace !== null) b.push('--bind', workspace, s.workdir, '--chdir', s.workdir);
    else b.push('--chdir', '/');
    const drop = this.isRoot
      ? [
          'setpriv',
          '--reuid',
          String(s.uid),
          '--regid',
          String(s.gid),
          '--clear-groups',
          '--inh-caps=-all',
          '--bounding-set=-all',
          '--',
        ]
      : [];
    // bwrap reads only options from fd 3; the command stays on the command line (it holds no host layout).
    const command = [...drop, 'prlimit', ...this.rlimitArgs(), '--', ...inner];
    return {
      program: this.bwrap,
      args: ['--args', '3', '--', ...command],
      fdArgs: `${b.join('\0')}\0`,
      workingDirectory: workspace === null ? '/' : s.workdir,
      env,
      sandboxed: true,
    };
  }

  /** The daemon's PATH without the folders the agent cannot see (they would only tell it the host's layout). */
  private sandboxPath(): string {
    const roots = [...SYSTEM_PATHS, ...this.settings.read_only_paths.map((p) => path.resolve(p))];
    const kept = (this.opts.hostPath ?? '')
      .split(':')
      .filter((dir) => path.isAbsolute(dir) && roots.some((r) => dir === r || dir.startsWith(`${r}/`)));
    return [...new Set(kept.length > 0 ? kept : ['/usr/local/bin', '/usr/bin', '/bin'])].join(':');
  }

  /** Paths the agent may read besides the system: `read_only_paths` and the absolute paths in `agent.command`. */
  private visiblePaths(): string[] {
    const out = new Set<string>();
    for (const p of this.settings.read_only_paths) out.add(path.resolve(p));
    for (const part of this.opts.command) if (path.isAbsolute(part) && existsSync(part)) out.add(part);
    return [...out];
  }

  /** prlimit options for `agent.limits` (soft = hard, so the agent cannot raise them; CPU aside). */
  private rlimitArgs(): string[] {
    const l = this.limits;
    return [
      `--data=${l.memory_mb * MIB}`,
      `--nproc=${l.max_processes}`,
      `--fsize=${l.max_file_size_mb * MIB}`,
      // The kernel sends SIGKILL, not SIGXCPU, at the hard limit: one more second makes the end say why.
      `--cpu=${l.cpu_seconds}:${l.cpu_seconds + 1}`,
      '--core=0',
    ];
  }

  /** The generated /etc/passwd and /etc/group (only the agent and nobody), and the egress bridge. */
  private writeRuntimeFiles(): void {
    const dir = this.opts.runtimeDir;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    const s = this.settings;
    const passwd = `root:x:0:0:root:/nonexistent:/usr/sbin/nologin\nagent:x:${s.uid}:${s.gid}:keen agent:${s.workdir}:/bin/sh\n`;
    const group = `root:x:0:\nagent:x:${s.gid}:\n`;
    writeFileSync(path.join(dir, 'passwd'), passwd, { mode: 0o644 });
    writeFileSync(path.join(dir, 'group'), group, { mode: 0o644 });
    writeFileSync(path.join(dir, 'bridge.mjs'), EGRESS_BRIDGE_SOURCE, { mode: 0o644 });
  }
}

/** The first executable `name` in the folders of `searchPath`, or null. */
function findOnPath(name: string, searchPath: string | undefined): string | null {
  for (const dir of (searchPath ?? '').split(':')) {
    if (!path.isAbsolute(dir)) continue;
    const file = path.join(dir, name);
    try {
      accessSync(file, fsConstants.X_OK);
      if (statSync(file).isFile()) return file;
    } catch {
      // not here
    }
  }
  return null;
}

/** Every folder above the given absolute paths (not `/`, nothing inside the read-only system paths), parents first. */
function ancestorsOf(paths: string[]): string[] {
  const out = new Set<string>();
  const system = (dir: string) =>
    ['/tmp', '/proc', '/dev'].includes(dir) || SYSTEM_PATHS.some((r) => dir === r || dir.startsWith(`${r}/`));
  for (const p of paths) {
    for (let dir = path.dirname(p); dir !== '/' && !system(dir); dir = path.dirname(dir)) out.add(dir);
  }
  for (const p of paths) if (out.has(p)) out.delete(p);
  return [...out].sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b));
}

function symlinkTarget(p: string): string | null {
  try {
    return lstatSync(p).isSymbolicLink() ? readlinkSync(p) : null;
  } catch {
    return null;
  }
}

/** Runs a wrapped command to its end with a time limit; for the probe. */
function runOnce(
  cmd: WrappedCommand,
  env: Record<string, string>,
  timeoutMs: number,
): Promise<{ code: number | null; stderr: string; error?: string }> {
  return new Promise((resolve) => {
    let stderr = '';
    let settled = false;
    const finish = (v: { code: number | null; stderr: string; error?: string }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(v);
    };
    const child = spawn(cmd.program, cmd.args, {
      env: { ...env, ...cmd.env },
      stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish({ code: null, stderr, error: 'timed out' });
    }, timeoutMs);
    child.on('error', (err) =>
      finish({
        code: null,
        stderr,
        error: (err as NodeJS.ErrnoException).code === 'ENOENT' ? `${cmd.program} is not installed` : err.message,
      }),
    );
    child.stderr!.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString('utf8');
    });
    const argsPipe = child.stdio[3] as NodeJS.WritableStream | null;
    if (argsPipe) {
      (argsPipe as unknown as { on(e: string, f: () => void): void }).on('error', () => {});
      argsPipe.end(cmd.fdArgs ?? '');
    }
    child.on('close', (code) => finish({ code, stderr }));
  });
}
