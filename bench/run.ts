/**
 * `npm run bench`: one run on this machine, loopback only, bounded in time.
 *
 * The daemon runs as a child process (`dist/daemon/main.js start`, as users run
 * it; `npm run build` first), the load generator (autocannon) in this process,
 * so the two do not share an event loop. Printed as Markdown:
 *
 *   (a) GET /health/live                          the bare daemon
 *   (b) GET /v1/credits/balance with a JWT         authenticated read
 *   (c) the same with an API key
 *   (d) POST /v1/agents/quote                      validation, estimator, admission read
 *   (e) POST /v1/agents/execute, accepted per second (no-op agent; settlement not awaited),
 *       on SQLite and, when KEEN_TEST_POSTGRES_URL is set, on Postgres
 *   (f) a minimal Koa + jsonwebtoken + better-sqlite3 endpoint (bench/baseline.ts),
 *       the floor for (b)
 *   (g) the agent sandbox's cost (bench/sandbox.ts): two daemons, `agent.sandbox.mode`
 *       bubblewrap (the default) and none, the same agent (the no-op one, reporting one
 *       phase first): executes accepted per second as in (e), side by side, and the time
 *       from sending an execute to its first agent event on a stream WebSocket, for
 *       BENCH_SANDBOX_EXECUTES (40) sequential executes on each (alternating, 20 s at most)
 *   stream fan-out to 1,000 subscribers: bench/stream.ts, when it exists (run as its own process)
 *
 * Every daemon runs in the default configuration: log level info (an access-log line per request),
 * its log written to a file as a service's is. (b) and (c) are measured beside the same reads on a
 * second daemon at log level warn (a copy of the data) and beside (f), in BENCH_ROUNDS (3)
 * interleaved rounds: a row is the median of its rounds, a ratio the median of per-round ratios.
 * Each of these also reports the server's CPU time per request (all its threads, from /proc), which
 * moves much less than req/s when other work shares the machine.
 * Every figure is also given as a ratio to (a) and to (f).
 * BENCH_SECONDS (5), BENCH_CONNECTIONS (100), BENCH_ROUNDS (3), BENCH_STREAM=0 skips the stream run.
 * BENCH_ONLY=a|b|c|d|e measures that daemon case alone (on SQLite, or on Postgres with
 * BENCH_BACKEND=postgres; b and c with their warn twin and (f)), BENCH_ONLY=i both b and c.
 * BENCH_CPU_PROF=DIR runs the daemons with `node --cpu-prof` writing their profiles to DIR (the pid
 * of each is printed), BENCH_DAEMON_LOG=FILE writes the info daemon's log there instead.
 * BENCH_ONLY=g runs the sandbox case alone (SQLite), BENCH_SANDBOX=0 skips it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  cpSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon, { type Result } from 'autocannon';
import { PROJECT_ROOT } from '../daemon/paths.js';
import { stringify as toYaml } from 'yaml';
import { makeHome, MAIN, NODE_ARGS, startDaemon, type DaemonHome } from '../test/helpers/daemon.js';
import { TEST_POSTGRES_URL } from '../test/helpers/env.js';
import { buildUser, type TestUser } from '../test/helpers/factories.js';
import { grant } from '../test/helpers/sessions.js';
import type { StorageBackend } from '../test/helpers/backends.js';
import { baselineToken, seedBaseline } from './baseline.js';
import { freePort } from '../test/helpers/ports.js';
import { alternate, FirstEventProbe, spread, type FirstEventSample, type Spread } from './sandbox.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 100);
const EXECUTE_USERS = 20;
const VISION = 'Benchmark: build a small todo app with tests';

interface Row {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  statuses: string;
  note?: string;
  /** req/s of each round, when the row sums interleaved rounds (see interleaved()). */
  perRound?: number[];
  /** CPU time the server process (all its threads) spent per 2xx answer, in µs, when its pid is known. */
  cpuUs?: number;
  cpuPerRound?: number[];
}

/** Limits far above what a 5 s run can reach: the benchmark measures the work, not the 429s. */
const CONFIG = {
  tiers: {
    individual: { requests_per_hour: 100_000_000 },
    team: { requests_per_hour: 100_000_000 },
    enterprise: { requests_per_hour: 100_000_000, max_concurrent_sessions: 10_000 },
  },
  limits: { ip_requests_per_hour: 100_000_000 },
};

function statusesOf(r: Result): string {
  return Object.entries(r.statusCodeStats)
    .map(([code, s]) => `${code}: ${s.count}`)
    .concat(r.errors ? [`errors: ${r.errors}`] : [])
    .join(', ');
}

/** CPU time a process has used, in ns: the sum over its threads (libuv's pool, the GC's helpers) of /proc schedstat. */
function cpuNs(pid: number): number {
  let total = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        // The thread ended between the listing and the read.
      }
    }
  } catch {
    return NaN;
  }
  return total;
}

/**
 * One case: 1 s of warm-up that is not counted, then SECONDS of load. With `pid`, the server's CPU
 * time per 2xx answer too: on a machine other work shares, req/s moves with what the others do,
 * CPU time per request much less (it is what bounds req/s when the server has a CPU to itself).
 */
async function measure(
  name: string,
  options: Parameters<typeof autocannon>[0],
  okStatus = 200,
  warmUp = true,
  pid?: number,
): Promise<Row> {
  if (warmUp) await autocannon({ connections: CONNECTIONS, duration: 1, timeout: 10, ...options });
  const cpuBefore = pid ? cpuNs(pid) : NaN;
  const r = await autocannon({ connections: CONNECTIONS, duration: SECONDS, timeout: 10, ...options });
  const cpu = pid ? cpuNs(pid) - cpuBefore : NaN;
  const ok = r.statusCodeStats[String(okStatus)]?.count ?? 0;
  const row: Row = { name, rps: ok / r.duration, p50: r.latency.p50, p99: r.latency.p99, statuses: statusesOf(r) };
  if (Number.isFinite(cpu) && ok > 0) row.cpuUs = cpu / 1000 / ok;
  return row;
}

/**
 * A no-op agent: reads its one stdin line, reports a result, exits. A shell, not node, so spawning it is cheap.
 * With `phase`, it reports one phase first: an agent event a stream client can time (case (g)).
 */
function noopAgent(dir: string, phase = false): string[] {
  const file = path.join(dir, phase ? 'noop-phase-agent.sh' : 'noop-agent.sh');
  const first = phase ? `printf '%s\\n' '{"type":"phase","phase":"EXPLORE"}'\n` : '';
  writeFileSync(
    file,
    `#!/bin/sh\nread -r _line\n${first}printf '%s\\n' '{"type":"result","status":"completed","summary":"bench"}'\n`,
    { mode: 0o755 },
  );
  return ['/bin/sh', file];
}

interface Fixture {
  home: DaemonHome;
  reader: TestUser;
  apiKey: string;
  executors: TestUser[];
}

/** Users, an API key and credits made by an in-process daemon on the benchmark's database, which then stops. */
async function prepare(backend: StorageBackend, agent: string[]): Promise<Fixture> {
  const home = await makeHome({ backend });
  const setup = await startDaemon({
    databaseUrl: home.databaseUrl,
    jwtSecret: home.jwtSecret,
    logLevel: 'warn',
    config: { ...CONFIG, agent: { command: agent } },
  });
  try {
    const reader = await buildUser(setup, { tier: 'enterprise' });
    await grant(setup, reader, 100);
    const key = await setup.api.post(
      '/v1/api-keys',
      { name: 'bench', rate_limit_per_hour: 1_000_000 },
      { token: reader.token },
    );
    if (key.status !== 201) throw new Error(`api key: ${key.status} ${key.text}`);
    const executors: TestUser[] = [];
    for (let i = 0; i < EXECUTE_USERS; i++) {
      const u = await buildUser(setup, { tier: 'enterprise' });
      await grant(setup, u, 1_000_000);
      executors.push(u);
    }
    return { home, reader, apiKey: key.body.key as string, executors };
  } finally {
    await setup.stop();
  }
}

interface Daemon {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * `keen-gateway start` as a child process, in the default configuration: log level info, one
 * access-log line per request, written to a file (`daemon-info.log` in its data directory, or
 * BENCH_DAEMON_LOG) as a service's log is; `level: 'warn'` for the comparison without access lines.
 */
async function spawnGateway(
  home: DaemonHome,
  agent: string[],
  agentConfig: Record<string, unknown> = {},
  level: 'info' | 'warn' = 'info',
): Promise<Daemon> {
  const port = await freePort();
  const configFile = path.join(home.dataDir, 'bench.yaml');
  writeFileSync(
    configFile,
    toYaml({
      ...CONFIG,
      env: 'test',
      data_dir: home.dataDir,
      server: { host: '127.0.0.1', port, shutdown_timeout_seconds: 5 },
      database: { url: home.databaseUrl },
      log: { level },
      agent: { command: agent, ...agentConfig },
    }),
  );
  const logFd = openSync(
    (level === 'info' && process.env.BENCH_DAEMON_LOG) || path.join(home.dataDir, `daemon-${level}.log`),
    'a',
  );
  const prof = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
  const child = spawn(process.execPath, [...NODE_ARGS, ...prof, MAIN, 'start', '--config', configFile], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, JWT_SECRET: home.jwtSecret },
    stdio: ['ignore', logFd, 'inherit'],
  });
  closeSync(logFd);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const until = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`daemon exited with ${child.exitCode}`);
    const ok = await fetch(`${url}/health/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > until) throw new Error('daemon did not become ready in 30 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  if (process.env.BENCH_CPU_PROF)
    console.error(`daemon at log level ${level}: pid ${child.pid} (its profile: CPU.*.${child.pid}.*.cpuprofile)`);
  return {
    url,
    pid: child.pid!,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * A second home on the same data (its own data directory, which a daemon locks): a copy of the
 * SQLite file, or the same Postgres schema. For the log level warn daemon beside the default one.
 */
function twinHome(home: DaemonHome, backend: StorageBackend): DaemonHome {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'keen-bench-twin-'));
  cpSync(home.dataDir, dataDir, { recursive: true });
  for (const name of readdirSync(dataDir))
    if (name.startsWith('daemon-')) rmSync(path.join(dataDir, name), { force: true });
  const databaseUrl = backend === 'sqlite' ? home.databaseUrl.replace(home.dataDir, dataDir) : home.databaseUrl;
  return {
    ...home,
    dataDir,
    databaseUrl,
    schema: null,
    cleanup: async () => rmSync(dataDir, { recursive: true, force: true }),
  };
}

/** Something to load: a name and autocannon's options. */
interface Target {
  name: string;
  options: Parameters<typeof autocannon>[0];
  /** The server's process, for its CPU time per request. */
  pid?: number;
}

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

/**
 * Measures the targets in turns, ROUNDS times, starting each round one target further on: a drift of
 * the machine's load (other work, the previous case's leftovers) then weighs on every target alike.
 * Returns each target's rounds, in the targets' order.
 */
async function interleaved(targets: Target[]): Promise<Row[][]> {
  const out: Row[][] = targets.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    for (let k = 0; k < targets.length; k++) {
      const i = (r + k) % targets.length;
      out[i]!.push(await measure(targets[i]!.name, targets[i]!.options, 200, true, targets[i]!.pid));
    }
  }
  return out;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** One row for a target's rounds: the median req/s, p50 and p99; the statuses summed. */
function summary(rounds: Row[]): Row {
  const statuses = new Map<string, number>();
  for (const r of rounds) {
    for (const part of r.statuses.split(', ')) {
      const [k, v] = part.split(': ');
      statuses.set(k!, (statuses.get(k!) ?? 0) + Number(v));
    }
  }
  return {
    name: rounds[0]!.name,
    rps: median(rounds.map((r) => r.rps)),
    p50: median(rounds.map((r) => r.p50)),
    p99: median(rounds.map((r) => r.p99)),
    statuses: [...statuses].map(([k, v]) => `${k}: ${v}`).join(', '),
    perRound: rounds.map((r) => r.rps),
    ...(rounds.every((r) => r.cpuUs !== undefined)
      ? { cpuUs: median(rounds.map((r) => r.cpuUs!)), cpuPerRound: rounds.map((r) => r.cpuUs!) }
      : {}),
  };
}

/** (f), running: the minimal Koa + jsonwebtoken + better-sqlite3 endpoint in its own process. */
interface Baseline {
  target: Target;
  stop(): void;
}

async function startBaseline(): Promise<Baseline> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'keen-bench-baseline-'));
  const file = path.join(dir, 'baseline.db');
  const secret = 'b'.repeat(43);
  seedBaseline(file, ['usr_bench']);
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(PROJECT_ROOT, 'bench/baseline.ts'), file, secret],
    {
      cwd: PROJECT_ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const stop = () => {
    child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error('baseline did not start')), 20_000);
      child.stdout!.on('data', (c: Buffer) => {
        buf += String(c);
        const m = /listening (\d+)/.exec(buf);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
      child.once('exit', (code) => reject(new Error(`baseline exited with ${code}`)));
    });
    return {
      target: {
        name: '(f) minimal Koa + jsonwebtoken + better-sqlite3 lookup',
        options: {
          url: `http://127.0.0.1:${port}/balance`,
          headers: { authorization: `Bearer ${baselineToken(secret, 'usr_bench')}` },
        },
        pid: child.pid!,
      },
      stop,
    };
  } catch (err) {
    stop();
    throw err;
  }
}

const READ = '/v1/credits/balance';

/**
 * The daemon cases on one backend, every daemon in the default configuration (log level info,
 * its log to a file). (b) and (c) are measured in interleaved rounds beside the same reads on a
 * second daemon at log level warn (SQLite only) and beside (f) when `baseline` is given; the
 * rows of those are the medians of the rounds.
 */
async function daemonCases(
  backend: StorageBackend,
  agent: string[],
  full: boolean,
  baseline: Baseline | null,
): Promise<Row[]> {
  const fx = await prepare(backend, agent);
  const only = process.env.BENCH_ONLY;
  const want = (c: string) => (only ? only === c || (only === 'i' && (c === 'b' || c === 'c')) : c === 'b' || full);
  const tag = backend === 'sqlite' ? 'SQLite' : 'Postgres';
  const twin = backend === 'sqlite' && (want('b') || want('c')) ? twinHome(fx.home, backend) : null;
  let d: Daemon | null = null;
  let warn: Daemon | null = null;
  try {
    d = await spawnGateway(fx.home, agent);
    if (twin) warn = await spawnGateway(twin, agent, {}, 'warn');
    const rows: Row[] = [];
    if (want('a')) rows.push(await measure('(a) GET /health/live', { url: `${d.url}/health/live` }, 200, true, d.pid));
    const jwt = { authorization: `Bearer ${fx.reader.token}` };
    const key = { authorization: `ApiKey ${fx.apiKey}` };
    const reads: Target[] = [];
    for (const [c, label, headers] of [
      ['b', 'JWT', jwt],
      ['c', 'API key', key],
    ] as const) {
      if (!want(c)) continue;
      reads.push({
        name: `(${c}) GET ${READ}, ${label} (${tag})`,
        options: { url: `${d.url}${READ}`, headers },
        pid: d.pid,
      });
      if (warn)
        reads.push({
          name: `(${c}) GET ${READ}, ${label} (${tag}), log level warn`,
          options: { url: `${warn.url}${READ}`, headers },
          pid: warn.pid,
        });
    }
    if (reads.length > 0) {
      const measured = await interleaved(baseline ? [...reads, baseline.target] : reads);
      rows.push(...measured.map(summary));
    }
    if (want('d')) {
      rows.push(
        await measure(`(d) POST /v1/agents/quote (${tag})`, {
          url: `${d.url}/v1/agents/quote`,
          method: 'POST',
          headers: { authorization: `Bearer ${fx.reader.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ vision: VISION, options: { maxIterations: 5 } }),
        }),
      );
    }
    await warn?.stop();
    warn = null;
    if (only && only !== 'e') return rows;
    // Executes: round-robin over the users; each accepted one starts the no-op agent. No
    // warm-up: the agents a warm-up accepted would still be starting during the measurement
    // (spawning is the daemon's bottleneck here, see docs/BENCHMARKS.md).
    let next = 0;
    const tokens = fx.executors.map((u) => u.token);
    const body = JSON.stringify({ vision: VISION, options: { maxIterations: 1, costBudget: 0.5 } });
    const exec = await measure(
      `(e) POST /v1/agents/execute, accepted/s (${tag})`,
      {
        url: `${d.url}/v1/agents/execute`,
        method: 'POST',
        requests: [
          {
            method: 'POST',
            body,
            setupRequest: (req) => ({
              ...req,
              headers: {
                'content-type': 'application/json',
                authorization: `Bearer ${tokens[next++ % tokens.length]}`,
              },
            }),
          },
        ],
      },
      200,
      false,
    );
    exec.note = 'settlement not awaited';
    rows.push(exec);
    // Let the agents started in the last second finish before the daemon goes.
    await new Promise((r) => setTimeout(r, 2000));
    return rows;
  } finally {
    await warn?.stop();
    await d?.stop();
    await twin?.cleanup();
    await fx.home.cleanup();
  }
}

const SANDBOX_EXECUTES = Number(process.env.BENCH_SANDBOX_EXECUTES ?? 40);
/** Wall time for all the timed executes of (g), both daemons together. */
const SANDBOX_LATENCY_DEADLINE_MS = 20_000;
/** The executes/s load of (g) runs in this many alternating rounds per daemon, SECONDS in all for each. */
const SANDBOX_ROUNDS = 2;

interface SandboxSide {
  mode: 'bubblewrap' | 'none';
  /** Executes/s, one row per round of SECONDS / SANDBOX_ROUNDS s. */
  rounds: Row[];
  /** Their mean (the rounds last as long). */
  rps: number;
  answered: Spread;
  firstEvent: Spread;
  firstEventType: string;
  failures: string[];
  /** `sandboxed` of a session this daemon ran, as the API tells it. */
  sandboxed: boolean | null;
  /** How the sessions the load started ended (`keen_sessions_ended_total`), e.g. `completed: 900`. */
  ended: string;
}

/** `keen_sessions_ended_total` by status, from the daemon's /metrics. */
async function endedByStatus(d: Daemon): Promise<Map<string, number>> {
  const text = await fetch(`${d.url}/metrics`).then(
    (r) => r.text(),
    () => '',
  );
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^keen_sessions_ended_total\{status="([^"]+)"\} (\S+)$/gm))
    out.set(m[1]!, Number(m[2]));
  return out;
}

/** Waits (10 s at most) until the daemon runs no agent, so the leftovers of a load do not weigh on what follows. */
async function drained(d: Daemon): Promise<void> {
  const until = Date.now() + 10_000;
  while (Date.now() < until) {
    const text = await fetch(`${d.url}/metrics`).then(
      (r) => r.text(),
      () => '',
    );
    const m = /^keen_sessions_running(?:\{[^}]*\})? (\S+)$/m.exec(text);
    if (m && Number(m[1]) === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * (g): two daemons, one per `agent.sandbox.mode`, the same agent, the same load.
 * First the execute -> first agent event latency (one execute at a time, alternating
 * between the daemons), then executes/s as in (e), in alternating rounds, the other daemon idle.
 */
async function sandboxCase(agentDir: string): Promise<SandboxSide[]> {
  const agent = noopAgent(agentDir, true);
  const modes = ['bubblewrap', 'none'] as const;
  const fixtures: Fixture[] = [];
  const daemons: Daemon[] = [];
  const probes: FirstEventProbe[] = [];
  try {
    for (let i = 0; i < modes.length; i++) fixtures.push(await prepare('sqlite', agent));
    // bubblewrap is the default: its daemon gets no sandbox key at all, as users run it.
    daemons.push(
      ...(await Promise.all(
        modes.map((mode, i) =>
          spawnGateway(fixtures[i]!.home, agent, mode === 'none' ? { sandbox: { mode: 'none' } } : {}),
        ),
      )),
    );
    // The first executor times the executes; the load below spreads over all of them.
    for (const [i, d] of daemons.entries())
      probes.push(await FirstEventProbe.open(d.url, fixtures[i]!.executors[0]!.token));
    const body = JSON.stringify({ vision: VISION, options: { maxIterations: 1, costBudget: 0.5 } });
    const timed = await alternate(probes, body, SANDBOX_EXECUTES, 3, SANDBOX_LATENCY_DEADLINE_MS);
    const sandboxed = await Promise.all(
      probes.map(async (p, i) => {
        const last = timed[i]!.samples.at(-1);
        return last ? (await p.session(last.sessionId)).sandboxed : null;
      }),
    );
    // Executes/s as in (e), in alternating halves (bubblewrap, none, bubblewrap, none): a drift of the
    // machine's load (the agents of earlier cases, other work) then weighs on both modes alike.
    const before = await Promise.all(
      daemons.map(async (d) => {
        await drained(d);
        return endedByStatus(d);
      }),
    );
    const rounds: Row[][] = modes.map(() => []);
    const next = modes.map(() => 0);
    for (let r = 0; r < SANDBOX_ROUNDS; r++) {
      for (const [i, mode] of modes.entries()) {
        const d = daemons[i]!;
        const tokens = fixtures[i]!.executors.map((u) => u.token);
        rounds[i]!.push(
          await measure(
            `(g) POST /v1/agents/execute, accepted/s, sandbox ${mode}`,
            {
              url: `${d.url}/v1/agents/execute`,
              method: 'POST',
              duration: SECONDS / SANDBOX_ROUNDS,
              requests: [
                {
                  method: 'POST',
                  body,
                  setupRequest: (req) => ({
                    ...req,
                    headers: {
                      'content-type': 'application/json',
                      authorization: `Bearer ${tokens[next[i]!++ % tokens.length]}`,
                    },
                  }),
                },
              ],
            },
            200,
            false,
          ),
        );
        // The agents accepted at the end are still running: let them end before the other daemon's turn.
        await drained(d);
      }
    }
    const out: SandboxSide[] = [];
    for (const [i, mode] of modes.entries()) {
      const after = await endedByStatus(daemons[i]!);
      const ended = [...after]
        .map(([status, n]) => [status, n - (before[i]!.get(status) ?? 0)] as const)
        .filter(([, n]) => n > 0);
      const samples: FirstEventSample[] = timed[i]!.samples;
      out.push({
        mode,
        rounds: rounds[i]!,
        rps: rounds[i]!.reduce((sum, row) => sum + row.rps, 0) / rounds[i]!.length,
        answered: spread(samples.map((s) => s.answeredMs)),
        firstEvent: spread(samples.map((s) => s.firstEventMs)),
        firstEventType: [...new Set(samples.map((s) => s.firstEventType))].join(', ') || 'none',
        failures: timed[i]!.failures,
        sandboxed: sandboxed[i]!,
        ended: ended.map(([status, n]) => `${status}: ${n}`).join(', ') || 'none',
      });
    }
    return out;
  } finally {
    for (const p of probes) p.close();
    await Promise.all(daemons.map((d) => d.stop()));
    for (const fx of fixtures) await fx.home.cleanup();
  }
}

/** The two tables of (g). */
function printSandbox(sides: SandboxSide[]): void {
  const [box, none] = sides as [SandboxSide, SandboxSide];
  const f = (n: number) => n.toFixed(1);
  const ran = (s: SandboxSide) => (s.sandboxed === null ? 'unknown' : s.sandboxed ? 'yes' : 'no');
  console.log(
    `\nAgent sandbox cost (g): two daemons on SQLite, agent.sandbox.mode bubblewrap (the default config) and none; ` +
      `the same no-op agent (/bin/sh: reads its line, reports one phase, then its result); agents sandboxed according to the API: ` +
      `bubblewrap ${ran(box)}, none ${ran(none)}${box.sandboxed === true ? '' : ' (WARNING: the bubblewrap daemon did not sandbox its agents: see keen-admin doctor)'}\n`,
  );
  console.log('| (g) POST /v1/agents/execute, accepted/s | sandbox bubblewrap | sandbox none | bubblewrap / none |');
  console.log('|---|---:|---:|---:|');
  const each = (s: SandboxSide, fn: (r: Row) => string) => s.rounds.map(fn).join(' / ');
  console.log(
    `| executes/s (200, settlement not awaited), ${SECONDS} s each | ${box.rps.toFixed(0)} | ${none.rps.toFixed(0)} | ${(box.rps / none.rps).toFixed(2)} |`,
  );
  console.log(
    `| executes/s per round (${SANDBOX_ROUNDS} alternating rounds of ${SECONDS / SANDBOX_ROUNDS} s) | ${each(box, (r) => r.rps.toFixed(0))} | ${each(none, (r) => r.rps.toFixed(0))} | |`,
  );
  console.log(`| p50 ms per round | ${each(box, (r) => f(r.p50))} | ${each(none, (r) => f(r.p50))} | |`);
  console.log(`| p99 ms per round | ${each(box, (r) => f(r.p99))} | ${each(none, (r) => f(r.p99))} | |`);
  console.log(`| statuses per round | ${each(box, (r) => r.statuses)} | ${each(none, (r) => r.statuses)} | |`);
  console.log(
    `| sessions the load started, by final status (with the <= ${CONNECTIONS} in flight at the end of each round) | ${box.ended} | ${none.ended} | |`,
  );
  console.log(
    `\nExecute -> first agent event (${box.firstEventType}) on a stream WebSocket opened beforehand (pushed, not polled): ` +
      `one execute at a time, each run to its end, alternating between the two daemons after 3 uncounted each; at most ${SANDBOX_EXECUTES} each within ${SANDBOX_LATENCY_DEADLINE_MS / 1000} s\n`,
  );
  console.log('| (g) sandbox | executes timed | failed | answered p50 ms | first event p50 ms | p90 ms | max ms |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const s of sides) {
    console.log(
      `| ${s.mode} | ${s.firstEvent.n} | ${s.failures.length} | ${f(s.answered.p50)} | ${f(s.firstEvent.p50)} | ${f(s.firstEvent.p90)} | ${f(s.firstEvent.max)} |`,
    );
  }
  const diff = box.firstEvent.p50 - none.firstEvent.p50;
  console.log(
    `\nthe sandbox adds ${diff >= 0 ? '+' : ''}${f(diff)} ms at p50 (p90 ${f(box.firstEvent.p90 - none.firstEvent.p90)} ms); target < 20 ms at p50: ${diff < 20 ? 'met' : 'MISSED'}; executes/s bubblewrap / none = ${(box.rps / none.rps).toFixed(2)}`,
  );
  for (const s of sides)
    if (s.failures.length) console.log(`failures (${s.mode}): ${[...new Set(s.failures)].slice(0, 3).join('; ')}`);
}

/** bench/stream.ts has no exported function yet: it runs as its own process and prints its table. */
async function streamCase(): Promise<string> {
  const file = path.join(PROJECT_ROOT, 'bench/stream.ts');
  if (process.env.BENCH_STREAM === '0') return 'skipped (BENCH_STREAM=0)';
  if (!existsSync(file)) return 'not measured: bench/stream.ts does not exist yet';
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', file], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, BENCH_CLIENTS: '1000' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
    child.stdout!.on('data', (c: Buffer) => (out += String(c)));
    child.stderr!.on('data', (c: Buffer) => (err += String(c)));
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(
        code === 0
          ? out.trim()
          : `bench/stream.ts failed (exit ${code}):\n${(err || out).trim().split('\n').slice(-5).join('\n')}`,
      );
    });
  });
}

/**
 * (b) and (c), at the default log level info and at warn, against (f): the median of the per-round
 * ratios (each round measures them minutes apart at most) with their range, and the targets.
 */
function printRatios(rows: Row[]): void {
  const f = rows.find((r) => r.name.startsWith('(f)'));
  if (!f?.perRound) return;
  for (const r of rows) {
    if (!r.perRound || r === f || !/^\([bc]\)/.test(r.name)) continue;
    const ratios = r.perRound.map((x, i) => x / f.perRound![i]!);
    const range = `${Math.min(...ratios).toFixed(2)} to ${Math.max(...ratios).toFixed(2)}`;
    const info = !r.name.endsWith('log level warn');
    const target = info
      ? `; target >= 0.80 with p99 < 25 ms: ${median(ratios) >= 0.8 && r.p99 < 25 ? 'met' : 'MISSED'}`
      : '';
    console.log(
      `${r.name} / (f) = ${median(ratios).toFixed(2)} (rounds ${range}), p99 ${r.p99.toFixed(1)} ms${target}`,
    );
    if (r.cpuPerRound && f.cpuPerRound) {
      // What req/s would be with a CPU to itself: (f)'s CPU time per request over this one's.
      const cpu = r.cpuPerRound.map((x, i) => f.cpuPerRound![i]! / x);
      console.log(
        `  by CPU time per request: ${median(cpu).toFixed(2)} (rounds ${Math.min(...cpu).toFixed(2)} to ${Math.max(...cpu).toFixed(2)}; ${r.cpuUs!.toFixed(1)} µs against ${f.cpuUs!.toFixed(1)} µs)`,
      );
    }
  }
}

if (!existsSync(MAIN)) {
  console.error('dist/ is missing: run `npm run build` first (the daemon runs as a child process from dist/).');
  process.exit(2);
}
const agentDir = mkdtempSync(path.join(os.tmpdir(), 'keen-bench-agent-'));
// process.exit (the BENCH_ONLY runs) skips `finally` below: the folder goes at exit as well.
process.on('exit', () => rmSync(agentDir, { recursive: true, force: true }));
try {
  const agent = noopAgent(agentDir);
  if (process.env.BENCH_ONLY === 'g') {
    printSandbox(await sandboxCase(agentDir));
    process.exit(0);
  }
  const only = process.env.BENCH_ONLY;
  const backend: StorageBackend = only && process.env.BENCH_BACKEND === 'postgres' ? 'postgres' : 'sqlite';
  // (f) runs beside the reads it is the floor of, in the same interleaved rounds.
  const baseline = !only || (backend === 'sqlite' && ['b', 'c', 'i'].includes(only)) ? await startBaseline() : null;
  let rows: Row[];
  try {
    rows = await daemonCases(backend, agent, true, baseline);
  } finally {
    baseline?.stop();
  }
  if (only) {
    for (const r of rows) {
      const rounds = r.perRound ? ` rounds ${r.perRound.map((x) => x.toFixed(0)).join(' / ')}` : '';
      const cpu =
        r.cpuUs === undefined
          ? ''
          : `, CPU ${r.cpuUs.toFixed(1)} µs/req (rounds ${r.cpuPerRound?.map((x) => x.toFixed(1)).join(' / ') ?? '-'})`;
      console.log(`${r.name}: ${r.rps.toFixed(1)}/s p50 ${r.p50} ms p99 ${r.p99} ms (${r.statuses})${rounds}${cpu}`);
    }
    printRatios(rows);
    process.exit(0);
  }
  if (TEST_POSTGRES_URL) rows.push(...(await daemonCases('postgres', agent, false, null)));
  const sandbox = process.env.BENCH_SANDBOX === '0' ? null : await sandboxCase(agentDir);
  const stream = await streamCase();

  const base = rows[0]!.rps;
  const f = rows.find((r) => r.name.startsWith('(f)'))!;
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  console.log(
    `\nkeen-gateway ${JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')).version}, node ${process.version}, ` +
      `${os.availableParallelism()} CPUs (${cpu}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB; ` +
      `autocannon ${CONNECTIONS} connections, ${SECONDS} s per case after 1 s warm-up, loopback; ` +
      'daemon a child process in the default configuration (log level info, its log to a file), ' +
      `in-process limiter; (b), (c) and (f) in ${ROUNDS} ` +
      `interleaved rounds (medians); load average at the end ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}\n`,
  );
  console.log('| case | req/s (2xx) | p50 ms | p99 ms | ratio to (a) | ratio to (f) | statuses |');
  console.log('|---|---:|---:|---:|---:|---:|---|');
  for (const r of rows) {
    console.log(
      `| ${r.name}${r.note ? ` (${r.note})` : ''} | ${r.rps.toFixed(0)} | ` +
        `${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ` +
        `${(r.rps / base).toFixed(2)} | ${(r.rps / f.rps).toFixed(2)} | ${r.statuses} |`,
    );
  }
  const b = rows.find((r) => r.name.startsWith('(b)'))!;
  const c = rows.find((r) => r.name.startsWith('(c)'))!;
  console.log('');
  printRatios(rows);
  console.log(
    `targets: (b) >= 60% of (a): ${(b.rps / base).toFixed(2)} ${b.rps / base >= 0.6 ? 'met' : 'MISSED'}; (c) >= 60% of (a): ${(c.rps / base).toFixed(2)} ${c.rps / base >= 0.6 ? 'met' : 'MISSED'}; p99 of (b) < 25 ms: ${b.p99.toFixed(1)} ms ${b.p99 < 25 ? 'met' : 'MISSED'}`,
  );
  const bPostgres = rows.find((r) => r.name === '(b) GET /v1/credits/balance, JWT (Postgres)');
  if (bPostgres) {
    const ratio = bPostgres.rps / b.rps;
    console.log(
      `(b) on Postgres / (b) on SQLite = ${ratio.toFixed(2)} (target >= 0.5: ${ratio >= 0.5 ? 'met' : 'MISSED'})`,
    );
    // Req/s of two runs at different times on a shared machine; the daemon's CPU time per answer is steadier.
    if (bPostgres.cpuUs && b.cpuUs) console.log(`  by CPU time per request: ${(b.cpuUs / bPostgres.cpuUs).toFixed(2)}`);
  }
  if (sandbox) printSandbox(sandbox);
  else console.log('\nAgent sandbox cost (g): skipped (BENCH_SANDBOX=0)');
  console.log(`\nStream fan-out (bench/stream.ts, 1,000 subscribers):\n${stream}`);
} finally {
  rmSync(agentDir, { recursive: true, force: true });
}
