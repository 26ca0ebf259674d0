/**
 * The shipped AgentRunner: one child process per session (docs/agent-protocol.md).
 *
 * Purity is enforced here, at the last step before the agent: the request is
 * re-copied by allow-list and validated, the environment is built from nothing
 * (PATH, HOME = workspace, LANG, and vetted passthrough names), and the agent's
 * stdout is read as untrusted input, validated line by line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import {
  closeSync,
  constants as fsConstants,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import type { Logger } from '../logger.js';
import { LineSplitter } from './line-splitter.js';
import { copyPureRequest } from './pure-request.js';
import { createAgentProtocol, type AgentProtocol } from './protocol.js';
import { childrenOf, LimitWatch, processTree } from './limit-watch.js';
import type { Sandbox, WrappedCommand } from './sandbox.js';
import type {
  AgentEvent,
  AgentExit,
  AgentExitReason,
  AgentHooks,
  AgentLimitName,
  AgentRun,
  AgentRunner,
  PureAgentRequest,
} from './types.js';
import { SESSION_ID_RE } from './workspaces.js';

export interface ProcessRunnerOptions {
  /** argv of the agent (`agent.command`); run without a shell. */
  command: string[];
  /** Names of variables the agent may see (`agent.env_passthrough`); secret-looking names are refused. */
  envPassthrough: string[];
  /** Wall-clock limit of one run (`agent.timeout_seconds` * 1000). */
  timeoutMs: number;
  /** Time between SIGTERM and SIGKILL (`agent.kill_grace_seconds` * 1000). */
  killGraceMs: number;
  logger: Logger;
  /** The daemon's environment (the composition root passes `process.env`); only vetted names are copied. */
  baseEnv: Record<string, string | undefined>;
  /** `workspaces.root`: every run's working directory must be `<root>/<sessionId>`. */
  workspacesRoot: string;
  /** Longest stdout line kept; longer lines are dropped and counted invalid. Default 64 KiB. */
  maxLineBytes?: number;
  /** Bytes of stderr kept in `<workspace>/.keen/agent.stderr.log`. Default 1 MiB. */
  maxStderrBytes?: number;
  /** Shared validators; built from schemas/ when omitted. */
  protocol?: AgentProtocol;
  /**
   * The operating-system sandbox and `agent.limits` (docs/SANDBOX.md). The daemon
   * always passes one; without it the agent runs as a plain child process.
   */
  sandbox?: Sandbox;
  /**
   * Where each running agent's process is recorded (`<data_dir>/agents`), so the
   * next start of the daemon can stop what a crash left running (`stopOrphans`).
   */
  pidDir?: string;
}

/** A running agent as recorded in `pidDir`: its process (also its group) and when it started. */
interface AgentPidRecord {
  pid: number;
  /** Field 22 of /proc/<pid>/stat: tells the same process from a later one that reused its pid. */
  start: string;
}

/** The start time of a process in clock ticks since boot (field 22 of /proc/<pid>/stat), or null when it is gone. */
export function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from its closing one.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/**
 * Never passed, even when listed (docs/agent-protocol.md): the gateway's own secrets and
 * the addresses of its stores. Other names pass only when the operator lists them in
 * `agent.env_passthrough` (an LLM agent needs its model provider's key, for example).
 */
const FORBIDDEN_ENV = [
  /^JWT_SECRET$/i,
  /^JWT_PREVIOUS_SECRETS$/i,
  /^KEEN_/i,
  /(^|_)DATABASE_URL$/i,
  /(^|_)REDIS_URL$/i,
  /^PG[A-Z]+$/,
  /^REDISCLI_AUTH$/i,
];
/** Built by the runner itself; a passthrough entry cannot replace them (HOME is always the workspace). */
const FIXED_ENV = new Set(['PATH', 'HOME', 'LANG']);

/** True when a variable name may never reach an agent. */
export function isForbiddenEnvName(name: string): boolean {
  return FORBIDDEN_ENV.some((re) => re.test(name));
}

const STDERR_LOG = path.join('.keen', 'agent.stderr.log');
/** What a failed session shows of the agent's stderr (docs/agent-protocol.md, "Stderr"). */
const TAIL_LINES = 20;
const TAIL_BYTES = 2048;

/**
 * The end of an agent's stderr as shown on its failed session: the last
 * `TAIL_LINES` non-blank lines, at most `TAIL_BYTES` bytes (the end kept),
 * control characters (ANSI colours included) removed, and values that look like
 * secrets masked: `NAME=value` for a name never passed to agents, passwords in URLs.
 * Null when nothing is left.
 */
export function stderrTail(raw: Buffer | string): string | null {
  let text = (typeof raw === 'string' ? raw : raw.toString('utf8'))
    .replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, '')
    .replace(/\r\n?/g, '\n')
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\ufffd]/g, '');
  text = text
    .replace(/\b([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|'[^']*'|\S+)/g, (all, name: string) =>
      isForbiddenEnvName(name) ? `${name}=***` : all,
    )
    .replace(/([a-z][a-z0-9+.-]*:\/\/[^\s:/@]*:)[^\s@/]+@/gi, '$1***@');
  let lines = text
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l.trim().length > 0)
    .slice(-TAIL_LINES);
  let out = lines.join('\n');
  while (Buffer.byteLength(out) > TAIL_BYTES && lines.length > 1) {
    lines = lines.slice(1);
    out = lines.join('\n');
  }
  if (Buffer.byteLength(out) > TAIL_BYTES) {
    // One very long line: keep its end, on a character boundary.
    const buf = Buffer.from(out);
    out = buf
      .subarray(buf.length - TAIL_BYTES)
      .toString('utf8')
      .replace(/^\ufffd+/, '');
  }
  return out.length > 0 ? out : null;
}
/** Above this many undelivered lines stdout is paused, so a fast agent cannot outrun a slow consumer. */
const QUEUE_HIGH = 256;
const QUEUE_LOW = 32;

export class ProcessRunner implements AgentRunner {
  private readonly passthrough: string[];
  private readonly protocol: AgentProtocol;

  constructor(private readonly opts: ProcessRunnerOptions) {
    if (opts.command.length === 0 || !opts.command[0]) throw new Error('agent.command is empty');
    this.protocol = opts.protocol ?? createAgentProtocol();
    this.passthrough = [];
    for (const name of new Set(opts.envPassthrough)) {
      if (isForbiddenEnvName(name)) {
        // Once, at construction: the daemon builds one runner.
        opts.logger.warn(
          { name },
          'agent.env_passthrough names a secret-looking variable; it is never passed to agents',
        );
      } else if (!FIXED_ENV.has(name)) {
        this.passthrough.push(name);
      }
    }
  }

  /** The agent's whole environment: built from nothing, never copied from the daemon's. */
  agentEnv(workspace: string): Record<string, string> {
    const base = this.opts.baseEnv;
    const env: Record<string, string> = {
      PATH: base.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      HOME: workspace,
      LANG: base.LANG || 'C.UTF-8',
    };
    for (const name of this.passthrough) {
      const value = base[name];
      if (value !== undefined) env[name] = value;
    }
    return env;
  }

  /**
   * At start-up, before any session is recovered: kills every agent a previous
   * run of this daemon left behind (it was killed before it could stop them),
   * with its process group and every descendant still in its tree. A pid reused
   * by another process since is left alone (its start time differs). Returns how
   * many agents were still running.
   */
  stopOrphans(): number {
    const dir = this.opts.pidDir;
    if (!dir) return 0;
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return 0;
    }
    let stopped = 0;
    for (const name of names) {
      if (!name.endsWith('.json')) continue;
      const file = path.join(dir, name);
      try {
        const record = JSON.parse(readFileSync(file, 'utf8')) as Partial<AgentPidRecord>;
        if (
          typeof record.pid === 'number' &&
          record.pid > 1 &&
          typeof record.start === 'string' &&
          processStart(record.pid) === record.start
        ) {
          const tree = processTree(record.pid);
          for (const target of [-record.pid, ...tree]) {
            try {
              process.kill(target, 'SIGKILL');
            } catch {
              // gone already
            }
          }
          stopped += 1;
          this.opts.logger.warn(
            { session_id: name.slice(0, -5), pid: record.pid, processes: tree.length },
            'killed an agent left running by a previous run of the daemon',
          );
        }
      } catch {
        // unreadable record: nothing to stop
      }
      rmSync(file, { force: true });
    }
    return stopped;
  }

  /** Whether runs go into the sandbox: it is configured and passed its start-up probe. */
  get sandboxed(): boolean {
    return this.opts.sandbox?.active === true;
  }

  /** Starts the agent. Never throws: a run that cannot start resolves `done` with `spawn_failed`. */
  start(sessionId: string, request: PureAgentRequest, hooks: AgentHooks): AgentRun {
    const log = this.opts.logger.child({ session_id: sessionId, component: 'agent' });
    let prepared: Prepared;
    try {
      prepared = this.prepare(sessionId, request);
    } catch (err) {
      log.error({ err: (err as Error).message }, 'agent not started');
      return failedRun((err as Error).message);
    }
    if (this.opts.sandbox && !prepared.command.sandboxed && this.opts.sandbox.settings.mode !== 'none') {
      log.warn('agent runs WITHOUT the sandbox: bubblewrap did not work at start (see keen-admin doctor)');
    }
    return new ProcessRun(
      this.opts,
      this.protocol,
      log,
      hooks,
      prepared,
      { ...this.agentEnv(prepared.workspace), ...prepared.command.env },
      sessionId,
    ).run;
  }

  /** Checks the workspace and the request, opens the stderr log. Throws on anything wrong. */
  private prepare(sessionId: string, request: PureAgentRequest): Prepared {
    if (!SESSION_ID_RE.test(sessionId)) throw new Error('invalid session id');
    const workspace = path.join(realpathSync(this.opts.workspacesRoot), sessionId);
    if (realpathSync(request.workingDirectory) !== workspace) {
      throw new Error('request.workingDirectory is not the session workspace');
    }
    const command: WrappedCommand = this.opts.sandbox
      ? this.opts.sandbox.wrap(workspace, this.opts.command)
      : {
          program: this.opts.command[0]!,
          args: this.opts.command.slice(1),
          fdArgs: null,
          workingDirectory: workspace,
          env: {},
          sandboxed: false,
        };
    const pure = copyPureRequest(request);
    // Inside the sandbox the agent sees its workspace at a fixed path: no session id, no host layout.
    pure.workingDirectory = command.workingDirectory;
    if (!this.protocol.isPureRequest(pure)) throw new Error('request does not match the agent protocol');
    const keenDir = path.join(workspace, '.keen');
    mkdirSync(keenDir, { mode: 0o700, recursive: true });
    if (!lstatSync(keenDir).isDirectory()) throw new Error('workspace .keen is not a directory');
    // O_NOFOLLOW: a symlink planted by an earlier run cannot redirect the log outside the workspace.
    const stderrFd = openSync(
      path.join(workspace, STDERR_LOG),
      fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT | fsConstants.O_NOFOLLOW,
      0o600,
    );
    try {
      this.opts.sandbox?.prepareWorkspace(workspace);
    } catch (err) {
      closeSync(stderrFd);
      throw err;
    }
    return { workspace, line: `${JSON.stringify(pure)}\n`, stderrFd, command };
  }
}

interface Prepared {
  workspace: string;
  line: string;
  stderrFd: number;
  command: WrappedCommand;
}

/** Signals that mean an rlimit of `agent.limits` ended the process. */
const LIMIT_SIGNALS: Record<string, AgentLimitName> = { SIGXCPU: 'cpu', SIGXFSZ: 'file_size' };
/** Signal names by number, to read bwrap's 128+N exit status of an agent killed by a signal. */
const SIGNAL_NAMES = new Map(Object.entries(osConstants.signals).map(([name, n]) => [n, name]));

function failedRun(why: string | null = null): AgentRun {
  const exit: AgentExit = {
    reason: 'spawn_failed',
    exitCode: null,
    signal: null,
    result: null,
    invalidLines: 0,
    stopReason: null,
    ...(why === null ? {} : { stderrTail: stderrTail(`keen-gateway: the agent could not be started: ${why}`) }),
  };
  return { pid: undefined, stop: async () => {}, done: Promise.resolve(exit) };
}

/** The state of one child process. */
class ProcessRun {
  readonly run: AgentRun;
  private child: ChildProcess | undefined;
  private exited = false;
  private exitCode: number | null = null;
  private exitSignal: string | null = null;
  private spawnFailed = false;
  private stopReason: string | null = null;
  private stopKind: AgentExitReason | null = null;
  private limit: AgentLimitName | null = null;
  private watch: LimitWatch | null = null;
  private stopping: Promise<void> | null = null;
  private result: AgentExit['result'] = null;
  private invalidLines = 0;
  private queue: Promise<void> = Promise.resolve();
  private pending = 0;
  private paused = false;
  private stderrBytes = 0;
  private stderrTruncated = false;
  /** The last bytes of stderr (kept even past the log's limit), for `AgentExit.stderrTail`. */
  private stderrEnd: Buffer = Buffer.alloc(0);
  /** Why the spawn failed (ENOENT, EACCES...), shown on the failed session. */
  private spawnError: string | null = null;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly exitWaiters: Array<() => void> = [];

  constructor(
    private readonly opts: ProcessRunnerOptions,
    private readonly protocol: AgentProtocol,
    private readonly log: Logger,
    private readonly hooks: AgentHooks,
    private readonly prepared: Prepared,
    env: Record<string, string>,
    private readonly sessionId: string,
  ) {
    const done = this.spawn(env);
    this.run = {
      pid: this.child?.pid,
      stop: (why: string, graceMs?: number) => this.stop(why, 'stopped', graceMs),
      done,
    };
  }

  private spawn(env: Record<string, string>): Promise<AgentExit> {
    const { program, args, fdArgs } = this.prepared.command;
    let child: ChildProcess;
    try {
      child = spawn(program, args, {
        cwd: this.prepared.workspace,
        env,
        // fd 3 carries bwrap's arguments (`--args 3`), so no host path shows in the sandbox's /proc/1/cmdline.
        stdio: fdArgs === null ? ['pipe', 'pipe', 'pipe'] : ['pipe', 'pipe', 'pipe', 'pipe'],
        // Own process group: the stop signal goes to -pid and reaches the agent's children.
        detached: true,
        shell: false,
        windowsHide: true,
      });
    } catch (err) {
      this.log.error({ err: (err as Error).message, command: program }, 'agent spawn failed');
      this.spawnError = (err as Error).message;
      this.closeStderr();
      return Promise.resolve(this.exitValue('spawn_failed'));
    }
    this.child = child;

    const exited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        this.exited = true;
        this.exitCode = code;
        this.exitSignal = signal;
        // bwrap reports an agent killed by signal N as exit status 128 + N.
        if (this.prepared.command.sandboxed && code !== null && code > 128 && SIGNAL_NAMES.has(code - 128)) {
          this.exitCode = null;
          this.exitSignal = SIGNAL_NAMES.get(code - 128)!;
        }
        const limit = this.exitSignal ? LIMIT_SIGNALS[this.exitSignal] : undefined;
        if (limit && !this.stopKind) {
          this.limit = limit;
          this.stopKind = 'limit';
          this.stopReason = `${limit}_limit`;
        }
        this.watch?.stop();
        this.clearTimers();
        // Whatever the agent left behind in its group goes with it.
        this.killGroup('SIGKILL');
        this.forgetPid();
        for (const w of this.exitWaiters.splice(0)) w();
        resolve();
      });
    });
    const spawnError = new Promise<'spawn_failed'>((resolve) => {
      child.once('error', (err) => {
        if (child.pid === undefined) {
          this.spawnFailed = true;
          this.spawnError = err.message;
          this.log.error({ err: err.message, command: program }, 'agent spawn failed');
          for (const w of this.exitWaiters.splice(0)) w();
          resolve('spawn_failed');
        } else {
          this.log.warn({ err: err.message }, 'agent process error');
        }
      });
    });

    if (fdArgs !== null) {
      const argsPipe = child.stdio[3] as NodeJS.WritableStream & { on(e: 'error', f: () => void): void };
      argsPipe.on('error', () => {});
      argsPipe.end(fdArgs);
    }
    // stdin: exactly one line, then EOF. An agent that exits without reading gives EPIPE: not our problem.
    child.stdin!.on('error', () => {});
    child.stdin!.end(this.prepared.line);

    const splitter = new LineSplitter(
      this.opts.maxLineBytes ?? 64 * 1024,
      (line) => this.onLine(line),
      (prefix) => this.onInvalid(prefix, 'line too long'),
    );
    const stdoutDone = new Promise<void>((resolve) => {
      child.stdout!.on('data', (chunk: Buffer) => splitter.push(chunk));
      child.stdout!.once('close', () => {
        splitter.end();
        resolve();
      });
      child.stdout!.on('error', () => {});
    });
    const stderrDone = new Promise<void>((resolve) => {
      child.stderr!.on('data', (chunk: Buffer) => this.onStderr(chunk));
      child.stderr!.once('close', () => resolve());
      child.stderr!.on('error', () => {});
    });

    if (child.pid !== undefined) {
      this.log.info({ pid: child.pid, sandboxed: this.prepared.command.sandboxed }, 'agent started');
      this.recordPid(child.pid);
      this.timers.push(setTimeout(() => void this.stop('timeout', 'timeout'), this.opts.timeoutMs));
      const limits = this.opts.sandbox?.limits;
      if (limits) {
        this.watch = new LimitWatch({
          pid: child.pid,
          workspace: this.prepared.workspace,
          memoryBytes: limits.memory_mb * 1024 * 1024,
          workspaceBytes: limits.workspace_mb * 1024 * 1024,
          onExceeded: (limit, used) => {
            this.log.warn({ limit, used_bytes: used }, 'agent over its limit; stopping it');
            this.limit = limit;
            void this.stop(`${limit}_limit`, 'limit');
          },
        });
        this.watch.start();
      }
    }

    const finished = Promise.race([
      spawnError,
      exited.then(async () => {
        // A process that escaped the group (setsid) may still hold our pipes: do not wait for it forever.
        const fallback = setTimeout(() => {
          child.stdout?.destroy();
          child.stderr?.destroy();
        }, Math.max(this.opts.killGraceMs, 1000) + 2000);
        await Promise.all([stdoutDone, stderrDone]);
        clearTimeout(fallback);
        return 'exited' as const;
      }),
    ]);

    return finished.then(async (how) => {
      await this.queue;
      this.closeStderr();
      const reason: AgentExitReason = how === 'spawn_failed' ? 'spawn_failed' : (this.stopKind ?? 'exited');
      const exit = this.exitValue(reason);
      this.log.info(
        {
          reason,
          exit_code: exit.exitCode,
          signal: exit.signal,
          invalid_lines: exit.invalidLines,
          result: exit.result?.status ?? null,
        },
        'agent ended',
      );
      return exit;
    });
  }

  private exitValue(reason: AgentExitReason): AgentExit {
    const failed = reason === 'spawn_failed';
    const exit: AgentExit = {
      reason,
      exitCode: failed ? null : this.exitCode,
      signal: failed ? null : this.exitSignal,
      result: failed ? null : this.result,
      invalidLines: this.invalidLines,
      stopReason: failed ? null : this.stopReason,
      limit: failed ? null : this.limit,
    };
    const tail = failed
      ? stderrTail(`keen-gateway: the agent could not be started: ${this.spawnError ?? 'unknown error'}`)
      : stderrTail(this.stderrEnd);
    // Left out when there is nothing to show.
    return tail === null ? exit : { ...exit, stderrTail: tail };
  }

  private onLine(line: string): void {
    if (line.trim() === '') return;
    const event = this.protocol.parseEventLine(line);
    if (!event) {
      this.onInvalid(line.length > 200 ? `${line.slice(0, 200)}...` : line, 'not a protocol event');
      return;
    }
    if (event.type === 'result') this.result = { status: event.status, summary: event.summary };
    this.enqueue(() => this.hooks.onEvent(event), event);
  }

  private onInvalid(line: string, why: string): void {
    this.invalidLines += 1;
    this.log.debug({ line, why }, 'agent stdout line ignored');
    if (this.hooks.onInvalidLine) this.enqueue(() => this.hooks.onInvalidLine?.(line), null);
  }

  /** Runs hook calls one after the other, in stdout order; a failing hook is logged and does not stop the stream. */
  private enqueue(task: () => void | Promise<void>, event: AgentEvent | null): void {
    this.pending += 1;
    if (this.pending >= QUEUE_HIGH && !this.paused && this.child?.stdout) {
      this.paused = true;
      this.child.stdout.pause();
    }
    this.queue = this.queue.then(async () => {
      try {
        await task();
      } catch (err) {
        this.log.error(
          { err: (err as Error).message, event_type: event?.type ?? 'invalid_line' },
          'agent event hook failed',
        );
      } finally {
        this.pending -= 1;
        if (this.paused && this.pending <= QUEUE_LOW) {
          this.paused = false;
          this.child?.stdout?.resume();
        }
      }
    });
  }

  private onStderr(chunk: Buffer): void {
    // Twice the shown size: room for the control characters and blank lines removed later.
    const keep = TAIL_BYTES * 2;
    const joined = chunk.length >= keep ? chunk : Buffer.concat([this.stderrEnd, chunk]);
    this.stderrEnd = joined.length <= keep ? joined : Buffer.from(joined.subarray(joined.length - keep));
    const max = this.opts.maxStderrBytes ?? 1024 * 1024;
    if (this.stderrTruncated) return; // keep reading so the agent never blocks on a full pipe
    const room = max - this.stderrBytes;
    const part = chunk.length <= room ? chunk : chunk.subarray(0, Math.max(room, 0));
    this.writeStderr(part);
    this.stderrBytes += part.length;
    if (chunk.length > room) {
      this.stderrTruncated = true;
      this.writeStderr(Buffer.from(`\n[keen-gateway: stderr truncated after ${max} bytes]\n`));
    }
  }

  private writeStderr(buf: Buffer): void {
    if (buf.length === 0 || this.prepared.stderrFd < 0) return;
    try {
      // Synchronous and small (bounded in total): keeps the order without a stream to drain at exit.
      writeSync(this.prepared.stderrFd, buf);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'agent stderr log write failed');
      this.closeStderr();
    }
  }

  private closeStderr(): void {
    if (this.prepared.stderrFd < 0) return;
    try {
      closeSync(this.prepared.stderrFd);
    } catch {
      // already closed
    }
    this.prepared.stderrFd = -1;
  }

  private get pidFile(): string | null {
    return this.opts.pidDir ? path.join(this.opts.pidDir, `${this.sessionId}.json`) : null;
  }

  /** Records the agent's process for `stopOrphans` (best effort: a failure is logged, the run goes on). */
  private recordPid(pid: number): void {
    const file = this.pidFile;
    const start = processStart(pid);
    if (!file || start === null) return;
    try {
      mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      writeFileSync(file, JSON.stringify({ pid, start } satisfies AgentPidRecord), { mode: 0o600 });
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not record the agent process');
    }
  }

  private forgetPid(): void {
    const file = this.pidFile;
    if (file) rmSync(file, { force: true });
  }

  /** SIGTERM to the group, SIGKILL after the grace (0: at once); resolves once the agent process has exited. */
  private stop(why: string, kind: AgentExitReason, graceMs = this.opts.killGraceMs): Promise<void> {
    if (this.stopping) {
      if (graceMs === 0 && !this.exited) this.killGroup('SIGKILL');
      return this.stopping;
    }
    if (this.exited || this.spawnFailed || this.child?.pid === undefined) {
      this.stopping = Promise.resolve();
      return this.stopping;
    }
    this.stopReason = why;
    this.stopKind = kind;
    this.log.info({ why }, 'stopping agent');
    const gone = new Promise<void>((resolve) => this.exitWaiters.push(resolve));
    this.watch?.stop();
    this.stopping = gone;
    if (graceMs === 0) {
      this.killGroup('SIGKILL');
      return gone;
    }
    if (this.prepared.command.sandboxed) this.signalSandboxed('SIGTERM');
    else this.killGroup('SIGTERM');
    this.timers.push(
      setTimeout(() => {
        if (!this.exited) {
          this.log.warn({ grace_ms: this.opts.killGraceMs }, 'agent ignored SIGTERM; sending SIGKILL');
          this.killGroup('SIGKILL');
        }
      }, graceMs),
    );
    return gone;
  }

  /**
   * Signals every process inside the sandbox, but not bwrap itself: bwrap dies of
   * SIGTERM and takes the whole sandbox with it at once (SIGKILL), which would
   * leave the agent no grace. The kill after the grace goes to bwrap's group.
   */
  private signalSandboxed(signal: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    // bwrap and its init (the sandbox's PID 1, bwrap's only child) are not signalled.
    const own = new Set([pid, ...childrenOf(pid)]);
    for (const p of processTree(pid)) {
      if (own.has(p)) continue;
      try {
        process.kill(p, signal);
      } catch {
        // already gone
      }
    }
  }

  private killGroup(signal: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    if (signal === 'SIGKILL' && !this.prepared.command.sandboxed && !this.exited) {
      // Without the sandbox's PID namespace, a descendant that left the group (setsid) is
      // still found in the agent's process tree while the agent lives.
      for (const p of processTree(pid)) {
        if (p === pid) continue;
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    try {
      process.kill(-pid, signal);
    } catch {
      // ESRCH: the group is already empty. Fall back to the process itself in case it left its group.
      if (!this.exited) {
        try {
          this.child?.kill(signal);
        } catch {
          // gone
        }
      }
    }
  }

  private clearTimers(): void {
    for (const t of this.timers.splice(0)) clearTimeout(t);
  }
}
