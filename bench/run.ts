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
 * Every figure is also given as a ratio to (a); (b) also as a ratio to (f).
 * BENCH_SECONDS (5), BENCH_CONNECTIONS (100), BENCH_STREAM=0 skips the stream run,
 * (b) and (c) are measured again at log level info (the default: an access-log line per
 * request, written to a file), the configuration users run (BENCH_ONLY=i).
 * BENCH_ONLY=a|b|c|d|e|i measures that daemon case alone (on SQLite, or on Postgres with BENCH_BACKEND=postgres), BENCH_CPU_PROF=DIR runs the
 * daemon with `node --cpu-prof` writing its profile to DIR, BENCH_DAEMON_LOG=FILE keeps its log.
 * BENCH_ONLY=g runs the sandbox case alone (SQLite), BENCH_SANDBOX=0 skips it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon, { type Result } from 'autocannon';
import { PROJECT_ROOT } from '../daemon/paths.js';
import net from 'node:net';
import { stringify as toYaml } from 'yaml';
import { makeHome, MAIN, NODE_ARGS, startDaemon, type DaemonHome } from '../test/helpers/daemon.js';
import { TEST_POSTGRES_URL } from '../test/helpers/env.js';
import { buildUser, type TestUser } from '../test/helpers/factories.js';
import { grant } from '../test/helpers/sessions.js';
import type { StorageBackend } from '../test/helpers/backends.js';
import { baselineToken, seedBaseline } from './baseline.js';
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

async function measure(name: string, options: Parameters<typeof autocannon>[0], okStatus = 200, warmUp = true): Promise<Row> {
  // One second of warm-up (connections opened, code optimized) that is not counted.
  if (warmUp) await autocannon({ connections: CONNECTIONS, duration: 1, timeout: 10, ...options });
  const r = await autocannon({ connections: CONNECTIONS, duration: SECONDS, timeout: 10, ...options });
  const ok = r.statusCodeStats[String(okStatus)]?.count ?? 0;
  return { name, rps: ok / r.duration, p50: r.latency.p50, p99: r.latency.p99, statuses: statusesOf(r) };
}

/**
 * A no-op agent: reads its one stdin line, reports a result, exits. A shell, not node, so spawning it is cheap.
 * With `phase`, it reports one phase first: an agent event a stream client can time (case (g)).
 */
function noopAgent(dir: string, phase = false): string[] {
  const file = path.join(dir, phase ? 'noop-phase-agent.sh' : 'noop-agent.sh');
  const first = phase ? `printf '%s\\n' '{"type":"phase","phase":"EXPLORE"}'\n` : '';
  writeFileSync(file, `#!/bin/sh\nread -r _line\n${first}printf '%s\\n' '{"type":"result","status":"completed","summary":"bench"}'\n`, { mode: 0o755 });
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
  const setup = await startDaemon({ databaseUrl: home.databaseUrl, jwtSecret: home.jwtSecret, logLevel: 'warn', config: { ...CONFIG, agent: { command: agent } } });
  try {
    const reader = await buildUser(setup, { tier: 'enterprise' });
    await grant(setup, reader, 100);
    const key = await setup.api.post('/v1/api-keys', { name: 'bench', rate_limit_per_hour: 1_000_000 }, { token: reader.token });
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

/** A free loopback port (the daemon logs at warn, so it cannot tell its ephemeral port). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

interface Daemon {
  url: string;
  stop(): Promise<void>;
}

/**
 * `keen-gateway start` as a child process, logging at warn: an access-log line per
 * request piped back to this process would cost the load generator CPU it needs.
 */
async function spawnGateway(home: DaemonHome, agent: string[], agentConfig: Record<string, unknown> = {}, logTo: string | null = null): Promise<Daemon> {
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
      log: { level: process.env.BENCH_DAEMON_LOG || logTo ? 'info' : 'warn' },
      agent: { command: agent, ...agentConfig },
    }),
  );
  // BENCH_DAEMON_LOG=FILE: the daemon logs at info into FILE (for debugging a case; it costs throughput).
  // logTo: the default configuration (log level info, one access line per request) writing to a file, as a service's log does.
  const logFile = logTo ?? process.env.BENCH_DAEMON_LOG;
  const logFd = logFile ? openSync(logFile, 'a') : 'ignore';
  const prof = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
  const child = spawn(process.execPath, [...NODE_ARGS, ...prof, MAIN, 'start', '--config', configFile], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, JWT_SECRET: home.jwtSecret },
    stdio: ['ignore', logFd, 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const until = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`daemon exited with ${child.exitCode}`);
    const ok = await fetch(`${url}/health/ready`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > until) throw new Error('daemon did not become ready in 30 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

async function daemonCases(backend: StorageBackend, agent: string[], full: boolean): Promise<Row[]> {
  const fx = await prepare(backend, agent);
  let d: Daemon | null = null;
  try {
    d = await spawnGateway(fx.home, agent);
    const rows: Row[] = [];
    const tag = backend === 'sqlite' ? 'SQLite' : 'Postgres';
    const only = process.env.BENCH_ONLY;
    const want = (c: string) => (only ? only === c : c === 'b' || full);
    if (want('a')) rows.push(await measure('(a) GET /health/live', { url: `${d.url}/health/live` }));
    if (want('b')) rows.push(await measure(`(b) GET /v1/credits/balance, JWT (${tag})`, { url: `${d.url}/v1/credits/balance`, headers: { authorization: `Bearer ${fx.reader.token}` } }));
    if (want('c')) rows.push(await measure(`(c) GET /v1/credits/balance, API key (${tag})`, { url: `${d.url}/v1/credits/balance`, headers: { authorization: `ApiKey ${fx.apiKey}` } }));
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
    if (want('i') && backend === 'sqlite') {
      // The same reads in the configuration users run: log level info, an access-log line per request, into a file.
      await d.stop();
      d = await spawnGateway(fx.home, agent, {}, path.join(fx.home.dataDir, 'daemon-info.log'));
      rows.push(await measure(`(b) at log level info, JWT (${tag})`, { url: `${d.url}/v1/credits/balance`, headers: { authorization: `Bearer ${fx.reader.token}` } }));
      rows.push(await measure(`(c) at log level info, API key (${tag})`, { url: `${d.url}/v1/credits/balance`, headers: { authorization: `ApiKey ${fx.apiKey}` } }));
    }
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
            setupRequest: (req) => ({ ...req, headers: { 'content-type': 'application/json', authorization: `Bearer ${tokens[next++ % tokens.length]}` } }),
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
    await d?.stop();
    await fx.home.cleanup();
  }
}

/** (f): the minimal Koa + jsonwebtoken + better-sqlite3 endpoint, in its own process. */
async function baselineCase(): Promise<Row> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'keen-bench-baseline-'));
  const file = path.join(dir, 'baseline.db');
  const secret = 'b'.repeat(43);
  seedBaseline(file, ['usr_bench']);
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', path.join(PROJECT_ROOT, 'bench/baseline.ts'), file, secret], {
    cwd: PROJECT_ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
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
    return await measure('(f) minimal Koa + jsonwebtoken + better-sqlite3 lookup', {
      url: `http://127.0.0.1:${port}/balance`,
      headers: { authorization: `Bearer ${baselineToken(secret, 'usr_bench')}` },
    });
  } finally {
    child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
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
  const text = await fetch(`${d.url}/metrics`).then((r) => r.text(), () => '');
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^keen_sessions_ended_total\{status="([^"]+)"\} (\S+)$/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}

/** Waits (10 s at most) until the daemon runs no agent, so the leftovers of a load do not weigh on what follows. */
async function drained(d: Daemon): Promise<void> {
  const until = Date.now() + 10_000;
  while (Date.now() < until) {
    const text = await fetch(`${d.url}/metrics`).then((r) => r.text(), () => '');
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
    daemons.push(...(await Promise.all(modes.map((mode, i) => spawnGateway(fixtures[i]!.home, agent, mode === 'none' ? { sandbox: { mode: 'none' } } : {})))));
    // The first executor times the executes; the load below spreads over all of them.
    for (const [i, d] of daemons.entries()) probes.push(await FirstEventProbe.open(d.url, fixtures[i]!.executors[0]!.token));
    const body = JSON.stringify({ vision: VISION, options: { maxIterations: 1, costBudget: 0.5 } });
    const timed = await alternate(probes, body, SANDBOX_EXECUTES, 3, SANDBOX_LATENCY_DEADLINE_MS);
    const sandboxed = await Promise.all(probes.map(async (p, i) => {
      const last = timed[i]!.samples.at(-1);
      return last ? (await p.session(last.sessionId)).sandboxed : null;
    }));
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
                  setupRequest: (req) => ({ ...req, headers: { 'content-type': 'application/json', authorization: `Bearer ${tokens[next[i]!++ % tokens.length]}` } }),
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
      const ended = [...after].map(([status, n]) => [status, n - (before[i]!.get(status) ?? 0)] as const).filter(([, n]) => n > 0);
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
  console.log(`| executes/s (200, settlement not awaited), ${SECONDS} s each | ${box.rps.toFixed(0)} | ${none.rps.toFixed(0)} | ${(box.rps / none.rps).toFixed(2)} |`);
  console.log(`| executes/s per round (${SANDBOX_ROUNDS} alternating rounds of ${SECONDS / SANDBOX_ROUNDS} s) | ${each(box, (r) => r.rps.toFixed(0))} | ${each(none, (r) => r.rps.toFixed(0))} | |`);
  console.log(`| p50 ms per round | ${each(box, (r) => f(r.p50))} | ${each(none, (r) => f(r.p50))} | |`);
  console.log(`| p99 ms per round | ${each(box, (r) => f(r.p99))} | ${each(none, (r) => f(r.p99))} | |`);
  console.log(`| statuses per round | ${each(box, (r) => r.statuses)} | ${each(none, (r) => r.statuses)} | |`);
  console.log(`| sessions the load started, by final status (with the <= ${CONNECTIONS} in flight at the end of each round) | ${box.ended} | ${none.ended} | |`);
  console.log(
    `\nExecute -> first agent event (${box.firstEventType}) on a stream WebSocket opened beforehand (pushed, not polled): ` +
      `one execute at a time, each run to its end, alternating between the two daemons after 3 uncounted each; at most ${SANDBOX_EXECUTES} each within ${SANDBOX_LATENCY_DEADLINE_MS / 1000} s\n`,
  );
  console.log('| (g) sandbox | executes timed | failed | answered p50 ms | first event p50 ms | p90 ms | max ms |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const s of sides) {
    console.log(`| ${s.mode} | ${s.firstEvent.n} | ${s.failures.length} | ${f(s.answered.p50)} | ${f(s.firstEvent.p50)} | ${f(s.firstEvent.p90)} | ${f(s.firstEvent.max)} |`);
  }
  const diff = box.firstEvent.p50 - none.firstEvent.p50;
  console.log(`\nthe sandbox adds ${diff >= 0 ? '+' : ''}${f(diff)} ms at p50 (p90 ${f(box.firstEvent.p90 - none.firstEvent.p90)} ms); target < 20 ms at p50: ${diff < 20 ? 'met' : 'MISSED'}; executes/s bubblewrap / none = ${(box.rps / none.rps).toFixed(2)}`);
  for (const s of sides) if (s.failures.length) console.log(`failures (${s.mode}): ${[...new Set(s.failures)].slice(0, 3).join('; ')}`);
}

/** bench/stream.ts has no exported function yet: it runs as its own process and prints its table. */
async function streamCase(): Promise<string> {
  const file = path.join(PROJECT_ROOT, 'bench/stream.ts');
  if (process.env.BENCH_STREAM === '0') return 'skipped (BENCH_STREAM=0)';
  if (!existsSync(file)) return 'not measured: bench/stream.ts does not exist yet';
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', file], { cwd: PROJECT_ROOT, env: { ...process.env, BENCH_CLIENTS: '1000' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
    child.stdout!.on('data', (c: Buffer) => (out += String(c)));
    child.stderr!.on('data', (c: Buffer) => (err += String(c)));
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code === 0 ? out.trim() : `bench/stream.ts failed (exit ${code}):\n${(err || out).trim().split('\n').slice(-5).join('\n')}`);
    });
  });
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
  const rows = await daemonCases(process.env.BENCH_ONLY && process.env.BENCH_BACKEND === 'postgres' ? 'postgres' : 'sqlite', agent, true);
  if (process.env.BENCH_ONLY) {
    for (const r of rows) console.log(`${r.name}: ${r.rps.toFixed(1)}/s p50 ${r.p50} ms p99 ${r.p99} ms (${r.statuses})`);
    process.exit(0);
  }
  if (TEST_POSTGRES_URL) rows.push(...(await daemonCases('postgres', agent, false)));
  const baseline = await baselineCase();
  rows.push(baseline);
  const sandbox = process.env.BENCH_SANDBOX === '0' ? null : await sandboxCase(agentDir);
  const stream = await streamCase();

  const base = rows[0]!.rps;
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  console.log(
    `\nkeen-gateway ${JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')).version}, node ${process.version}, ` +
      `${os.availableParallelism()} CPUs (${cpu}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB; ` +
      `autocannon ${CONNECTIONS} connections, ${SECONDS} s per case after 1 s warm-up, loopback; daemon a child process (log level warn), in-process limiter; ` +
      `load average at the end ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n`,
  );
  console.log('| case | req/s (2xx) | p50 ms | p99 ms | ratio to (a) | statuses |');
  console.log('|---|---:|---:|---:|---:|---|');
  for (const r of rows) {
    console.log(`| ${r.name}${r.note ? ` (${r.note})` : ''} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${(r.rps / base).toFixed(2)} | ${r.statuses} |`);
  }
  const b = rows.find((r) => r.name.startsWith('(b)'))!;
  const c = rows.find((r) => r.name.startsWith('(c)'))!;
  const bInfo = rows.find((r) => r.name.startsWith('(b) at log level info'));
  console.log(`\n(b) / (f) = ${(b.rps / baseline.rps).toFixed(2)}: the gateway's authenticated read against the minimal Koa + jsonwebtoken + better-sqlite3 endpoint`);
  if (bInfo) console.log(`(b) at info / (f) = ${(bInfo.rps / baseline.rps).toFixed(2)}: the same in the default configuration (an access-log line per request, to a file)`);
  console.log(`targets: (b) >= 60% of (a): ${(b.rps / base).toFixed(2)} ${b.rps / base >= 0.6 ? 'met' : 'MISSED'}; (c) >= 60% of (a): ${(c.rps / base).toFixed(2)} ${c.rps / base >= 0.6 ? 'met' : 'MISSED'}; p99 of (b) < 25 ms: ${b.p99.toFixed(1)} ms ${b.p99 < 25 ? 'met' : 'MISSED'}`);
  if (sandbox) printSandbox(sandbox);
  else console.log('\nAgent sandbox cost (g): skipped (BENCH_SANDBOX=0)');
  console.log(`\nStream fan-out (bench/stream.ts, 1,000 subscribers):\n${stream}`);
} finally {
  rmSync(agentDir, { recursive: true, force: true });
}
