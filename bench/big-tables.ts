/**
 * `npm run bench:big`: the gateway on big tables against the same gateway on an
 * empty database, in one run, as ratios (docs/BENCHMARKS.md, "Big tables").
 *
 * The big database holds 1,000,000 ledger entries, 1,000,000 audit entries (a
 * valid hash chain), 100,000 users and 200,000 sessions at BIG_SCALE=1 (the
 * default; BIG_SCALE=0.01 for a quick run), written by bench/big-fill.ts. It is
 * kept between runs and reused when present: a SQLite file under BIG_DIR
 * (default $TMPDIR/keen-big-tables), a Postgres schema `keen_big_<scale>`.
 *
 * Both daemons run as child processes from dist/ (`npm run build` first), side
 * by side; each case is measured on one then the other, in alternating order
 * (empty, big, big, empty), so the load of the machine weighs on both alike:
 *   - GET /v1/credits/balance (JWT)                 the authenticated hot read
 *   - POST /v1/agents/quote                         execute admission (validation, estimator, admission read)
 *   - GET /v1/sessions, first page and a deep page  keyset pagination by cursor
 *   - GET /v1/credits/transactions, first and deep
 *   - GET /v1/admin/audit?actor_id&action&since&until
 * Then `keen-admin credits verify`, `audit verify` and `audit export` on each:
 * wall time, the CLI's peak RSS (/usr/bin/time) and the daemon's (VmHWM, reset
 * before each job through /proc/<pid>/clear_refs).
 *
 * BENCH_BACKEND=sqlite|postgres|both (default: both when KEEN_TEST_POSTGRES_URL is set),
 * BENCH_SECONDS (4 per side and case), BENCH_CONNECTIONS (50), BIG_ONLY=fill (fill and exit),
 * BIG_JOBS=0 (skip the CLI jobs), BIG_READS=0 (skip the autocannon cases). The reads start once each
 * daemon's first ledger drift pass (verify() 30 s after start) has ended; its time is reported.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import pg from 'pg';
import { stringify as toYaml } from 'yaml';
import { newId } from '../daemon/ids.js';
import { PROJECT_ROOT } from '../daemon/paths.js';
import type { StorageBackend } from '../test/helpers/backends.js';
import { ADMIN, MAIN, NODE_ARGS, makeHome, startDaemon, type TestDaemon } from '../test/helpers/daemon.js';
import { TEST_POSTGRES_URL } from '../test/helpers/env.js';
import { buildApiKey, buildUser, mintToken } from '../test/helpers/factories.js';
import { fill, HEAVY_EMAIL, isFilled, sizeAt } from './big-fill.js';
import { freePort } from '../test/helpers/ports.js';

type Options = Parameters<typeof autocannon>[0];

const SCALE = Number(process.env.BIG_SCALE ?? 1);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const BIG_DIR = process.env.BIG_DIR ?? path.join(os.tmpdir(), 'keen-big-tables');
const VISION = 'Benchmark: build a small todo app with tests';

/** Limits far above what the run reaches: the benchmark measures the work, not the 429s. */
const CONFIG = {
  tiers: {
    individual: { requests_per_hour: 100_000_000 },
    team: { requests_per_hour: 100_000_000 },
    enterprise: { requests_per_hour: 100_000_000, max_concurrent_sessions: 10_000 },
  },
  limits: { ip_requests_per_hour: 100_000_000 },
};

const log = (line: string) => process.stderr.write(`${line}\n`);

/** One database made ready for the cases: who calls, and the cursors of the deep pages. */
interface Side {
  label: 'empty' | 'big';
  dataDir: string;
  databaseUrl: string;
  jwtSecret: string;
  adminToken: string;
  adminKey: string;
  heavyToken: string;
  sessionsCursor: string;
  transactionsCursor: string;
  auditQuery: string;
  cleanup(): Promise<void>;
}

async function postgresSchema(name: string): Promise<string> {
  const client = new pg.Client({ connectionString: TEST_POSTGRES_URL! });
  await client.connect();
  try {
    await client.query(`create schema if not exists ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(TEST_POSTGRES_URL!);
  url.searchParams.set('options', `-c search_path=${name}`);
  return url.toString();
}

/**
 * The "empty" database: fresh, holding only what the cases read, one page or two
 * for the caller (so both daemons answer the same page sizes): 2 users, 1,000
 * ledger entries, 5,000 audit entries, 400 sessions (a tenth of each is the caller's).
 */
const SMALL = { users: 2, ledger: 1000, audit: 5000, sessions: 400 };

/** Migrates the database (an in-process daemon starts and stops), then writes the fixture when missing. */
async function ensureFilled(backend: StorageBackend, url: string, size: typeof SMALL): Promise<void> {
  const d = await startDaemon({ databaseUrl: url, logLevel: 'warn', config: CONFIG });
  await d.stop();
  if (await isFilled(url)) {
    log(`${backend}: reusing the filled database (BIG_SCALE=${SCALE})`);
    return;
  }
  log(`${backend}: filling ${JSON.stringify(size)}`);
  const t0 = performance.now();
  await fill(url, size, log);
  log(`${backend}: filled in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/** The big database of this scale: made, migrated and filled on the first run, reused after. */
async function bigDatabase(backend: StorageBackend): Promise<string> {
  const tag = `s${String(SCALE).replace('.', '_')}`;
  mkdirSync(BIG_DIR, { recursive: true });
  const url =
    backend === 'sqlite' ? `sqlite:${path.join(BIG_DIR, `big-${tag}.db`)}` : await postgresSchema(`keen_big_${tag}`);
  await ensureFilled(backend, url, sizeAt(SCALE));
  return url;
}

async function prepareSide(backend: StorageBackend, label: Side['label']): Promise<Side> {
  const home = await makeHome({ backend });
  const databaseUrl = label === 'big' ? await bigDatabase(backend) : home.databaseUrl;
  if (label === 'empty') await ensureFilled(backend, databaseUrl, SMALL);
  const d = await startDaemon({ databaseUrl, jwtSecret: home.jwtSecret, logLevel: 'warn', config: CONFIG });
  try {
    const admin = await buildUser(d, { role: 'admin', tier: 'enterprise' });
    const adminKey = (await buildApiKey(d, admin)).key;
    const heavy = await d.container.database.db
      .selectFrom('users')
      .selectAll()
      .where('email', '=', HEAVY_EMAIL)
      .executeTakeFirstOrThrow();
    // Credits to quote against.
    await d.container.ledger.grant({
      userId: heavy.id,
      amount: 100_000_000 as never,
      reason: 'bench',
      actor: { type: 'system', id: null },
    });
    const cursors = await deepCursors(d, heavy.id);
    return {
      label,
      dataDir: home.dataDir,
      databaseUrl,
      jwtSecret: home.jwtSecret,
      adminToken: admin.token,
      adminKey,
      heavyToken: mintToken(d, heavy),
      ...cursors,
      cleanup: () => home.cleanup(),
    };
  } finally {
    await d.stop();
  }
}

/**
 * Cursors nine tenths of the way down the heavy user's sessions and ledger (newest first; a
 * full page below them at least), and an audit query over the middle fifth of his entries' time span.
 */
async function deepCursors(
  d: TestDaemon,
  userId: string,
): Promise<Pick<Side, 'sessionsCursor' | 'transactionsCursor' | 'auditQuery'>> {
  const db = d.container.database.db;
  const sessions = Number(
    (
      await db
        .selectFrom('sessions')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('user_id', '=', userId)
        .executeTakeFirstOrThrow()
    ).n,
  );
  const deepSession = await db
    .selectFrom('sessions')
    .select('id')
    .where('user_id', '=', userId)
    .orderBy('id', 'asc')
    .offset(Math.max(20, Math.floor(sessions / 10)))
    .limit(1)
    .executeTakeFirst();
  const entries = Number(
    (
      await db
        .selectFrom('credit_ledger')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('user_id', '=', userId)
        .executeTakeFirstOrThrow()
    ).n,
  );
  const deepEntry = await db
    .selectFrom('credit_ledger')
    .select('seq')
    .where('user_id', '=', userId)
    .orderBy('seq', 'asc')
    .offset(Math.max(50, Math.floor(entries / 10)))
    .limit(1)
    .executeTakeFirst();
  const span = await db
    .selectFrom('audit_log')
    .select((eb) => [eb.fn.min<number>('ts').as('first'), eb.fn.max<number>('ts').as('last')])
    .where('actor_id', '=', userId)
    .executeTakeFirst();
  const first = Number(span?.first ?? Date.now() - 3_600_000);
  const last = Number(span?.last ?? Date.now());
  const since = new Date(first + (last - first) * 0.4).toISOString();
  const until = new Date(first + (last - first) * 0.6).toISOString();
  return {
    sessionsCursor: deepSession?.id ?? newId('ses'),
    // The ledger's cursor format (daemon/credits/ledger.ts): base64url of {"s": seq}.
    transactionsCursor: Buffer.from(JSON.stringify({ s: Number(deepEntry?.seq ?? 2) })).toString('base64url'),
    auditQuery: new URLSearchParams({ actor_id: userId, action: 'auth.*', since, until, limit: '10' }).toString(),
  };
}

interface Daemon {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** `keen-gateway start` as a child process at log level warn, as bench/run.ts runs it. */
async function spawnGateway(side: Side): Promise<Daemon> {
  const port = await freePort();
  const configFile = path.join(side.dataDir, 'bench.yaml');
  writeFileSync(
    configFile,
    toYaml({
      ...CONFIG,
      env: 'test',
      data_dir: side.dataDir,
      server: { host: '127.0.0.1', port, shutdown_timeout_seconds: 5 },
      database: { url: side.databaseUrl },
      log: { level: 'warn' },
    }),
  );
  const child = spawn(process.execPath, [...NODE_ARGS, MAIN, 'start', '--config', configFile], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, JWT_SECRET: side.jwtSecret },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const until = Date.now() + 300_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`daemon exited with ${child.exitCode}`);
    if (
      await fetch(`${url}/health/ready`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    if (Date.now() > until) throw new Error('daemon did not become ready in 300 s');
    await new Promise((r) => setTimeout(r, 100));
  }
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
 * Waits for the daemon's first ledger drift pass (daemon/monitoring/ledger-drift.ts: the ledger's
 * verify() 30 s after start, then every 10 minutes) to complete, so the reads measure the steady
 * state; returns the seconds from start to its end.
 */
async function firstDriftPass(d: Daemon, startedAt: number): Promise<number> {
  for (;;) {
    const text = await fetch(`${d.url}/metrics`).then(
      (r) => r.text(),
      () => '',
    );
    const m = /^keen_ledger_verify_last_success_timestamp_seconds (\S+)$/m.exec(text);
    if (m && Number(m[1]) > 0) return (performance.now() - startedAt) / 1000;
    await new Promise((r) => setTimeout(r, 500));
  }
}

interface Reading {
  statuses: string;
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
}

async function load(url: string, token: string, seconds: number, extra: Partial<Options> = {}): Promise<Reading> {
  const r = await autocannon({
    url,
    connections: CONNECTIONS,
    duration: seconds,
    timeout: 10,
    ...extra,
    headers: { authorization: `Bearer ${token}`, ...(extra.headers ?? {}) },
  });
  const ok = Object.entries(r.statusCodeStats).reduce((n, [code, s]) => n + (code.startsWith('2') ? s.count : 0), 0);
  const all = Object.values(r.statusCodeStats).reduce((n, s) => n + s.count, 0);
  const statuses = Object.entries(r.statusCodeStats)
    .map(([code, st]) => `${code}: ${st.count}`)
    .join(', ');
  return { statuses, rps: ok / r.duration, p50: r.latency.p50, p99: r.latency.p99, non2xx: all - ok + r.errors };
}

interface CaseResult {
  name: string;
  empty: Reading;
  big: Reading;
}

/** One case on both daemons: 1 s warm-up each, then empty, big, big, empty, SECONDS / 2 each. */
async function measureCase(
  name: string,
  sides: Array<{ side: Side; daemon: Daemon }>,
  request: (s: Side) => { path: string; token: string; extra?: Partial<Options> },
): Promise<CaseResult> {
  const run = async (i: number, seconds: number) => {
    const { side, daemon } = sides[i]!;
    const r = request(side);
    return load(`${daemon.url}${r.path}`, r.token, seconds, r.extra);
  };
  await run(0, 1);
  await run(1, 1);
  const half = SECONDS / 2;
  const e1 = await run(0, half);
  const b1 = await run(1, half);
  const b2 = await run(1, half);
  const e2 = await run(0, half);
  const avg = (a: Reading, b: Reading): Reading => ({
    rps: (a.rps + b.rps) / 2,
    p50: (a.p50 + b.p50) / 2,
    p99: Math.max(a.p99, b.p99),
    non2xx: a.non2xx + b.non2xx,
    statuses: a.statuses,
  });
  const out = { name, empty: avg(e1, e2), big: avg(b1, b2) };
  log(
    `  ${name}: empty ${out.empty.rps.toFixed(0)}/s, big ${out.big.rps.toFixed(0)}/s ` +
      `(${(out.big.rps / out.empty.rps).toFixed(2)}) [${out.big.statuses}]`,
  );
  return out;
}

function vmHwmKb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** Resets the process's peak RSS to its current RSS (Linux >= 4.0); false when not allowed. */
function resetHwm(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

interface JobResult {
  name: string;
  side: Side['label'];
  seconds: number;
  cliPeakKb: number;
  daemonPeakKb: number;
  /** Bytes written to stdout, and the summary the command printed. */
  stdoutBytes: number;
  outcome: string;
  code: number | null;
}

/** Runs keen-admin under /usr/bin/time against `daemon`: wall time, the CLI's peak RSS, the daemon's peak RSS. */
async function job(name: string, args: string[], side: Side, daemon: Daemon): Promise<JobResult> {
  const timeFile = path.join(side.dataDir, 'time.txt');
  const reset = resetHwm(daemon.pid);
  const t0 = performance.now();
  const child = spawn('/usr/bin/time', ['-f', '%M', '-o', timeFile, process.execPath, ...NODE_ARGS, ADMIN, ...args], {
    cwd: PROJECT_ROOT,
    env: {
      ...process.env,
      KEEN_URL: daemon.url,
      KEEN_API_KEY: side.adminKey,
      KEEN_PROFILE: '',
      XDG_CONFIG_HOME: side.dataDir,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let bytes = 0;
  let head = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => {
    bytes += c.length;
    if (head.length < 2000) head += String(c).slice(0, 2000);
  });
  child.stderr!.on('data', (c: Buffer) => (stderr += String(c)));
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  const seconds = (performance.now() - t0) / 1000;
  const cliPeakKb = Number(/(\d+)\s*$/.exec(readFileSync(timeFile, 'utf8'))?.[1] ?? NaN);
  const daemonPeakKb = reset ? vmHwmKb(daemon.pid) : NaN;
  const outcome = summarize(name, head, stderr, code);
  log(
    `  ${name} (${side.label}): ${seconds.toFixed(1)} s, CLI ${(cliPeakKb / 1024).toFixed(0)} MiB, ` +
      `daemon ${(daemonPeakKb / 1024).toFixed(0)} MiB, ${outcome}`,
  );
  return { name, side: side.label, seconds, cliPeakKb, daemonPeakKb, stdoutBytes: bytes, outcome, code };
}

function summarize(name: string, stdout: string, stderr: string, code: number | null): string {
  if (code !== 0) return `exit ${code}: ${stderr.trim().split('\n').slice(-1)[0]?.slice(0, 160) ?? ''}`;
  if (name.includes('export')) return 'ok';
  try {
    const r = JSON.parse(stdout.split('\n')[0]!) as { ok: boolean; entries?: number };
    return r.ok ? `ok${r.entries !== undefined ? ` (${r.entries} entries)` : ''}` : 'NOT ok';
  } catch {
    return stdout.trim().slice(0, 80);
  }
}

interface BackendResult {
  backend: StorageBackend;
  cases: CaseResult[];
  jobs: JobResult[];
  /** Seconds from the daemons' start to the end of their first ledger drift pass (empty, big). */
  drift?: number[];
}

async function runBackend(backend: StorageBackend): Promise<BackendResult> {
  log(`${backend}: preparing`);
  const empty = await prepareSide(backend, 'empty');
  const big = await prepareSide(backend, 'big');
  if (process.env.BIG_ONLY === 'fill') {
    await empty.cleanup();
    await big.cleanup();
    return { backend, cases: [], jobs: [] };
  }
  const daemons: Daemon[] = [];
  try {
    const started = performance.now();
    daemons.push(await spawnGateway(empty), await spawnGateway(big));
    const drift = await Promise.all(daemons.map((d) => firstDriftPass(d, started)));
    log(
      `${backend}: first ledger drift pass done after ` +
        `${drift.map((s) => s.toFixed(0)).join(' s (empty), ')} s (big) from the start`,
    );
    const sides = [
      { side: empty, daemon: daemons[0]! },
      { side: big, daemon: daemons[1]! },
    ];
    const cases: CaseResult[] = [];
    if (process.env.BIG_READS !== '0') {
      log(`${backend}: reads`);
      const json = { 'content-type': 'application/json' };
      cases.push(
        await measureCase('GET /v1/credits/balance (JWT)', sides, (s) => ({
          path: '/v1/credits/balance',
          token: s.heavyToken,
        })),
      );
      cases.push(
        await measureCase('POST /v1/agents/quote (admission)', sides, (s) => ({
          path: '/v1/agents/quote',
          token: s.heavyToken,
          extra: {
            method: 'POST',
            headers: json,
            body: JSON.stringify({ vision: VISION, options: { maxIterations: 5 } }),
          },
        })),
      );
      cases.push(
        await measureCase('GET /v1/sessions, first page', sides, (s) => ({
          path: '/v1/sessions?limit=20',
          token: s.heavyToken,
        })),
      );
      cases.push(
        await measureCase('GET /v1/sessions, deep page (cursor)', sides, (s) => ({
          path: `/v1/sessions?limit=20&cursor=${s.sessionsCursor}`,
          token: s.heavyToken,
        })),
      );
      cases.push(
        await measureCase('GET /v1/credits/transactions, first page', sides, (s) => ({
          path: '/v1/credits/transactions?limit=50',
          token: s.heavyToken,
        })),
      );
      cases.push(
        await measureCase('GET /v1/credits/transactions, deep page (cursor)', sides, (s) => ({
          path: `/v1/credits/transactions?limit=50&cursor=${s.transactionsCursor}`,
          token: s.heavyToken,
        })),
      );
      cases.push(
        await measureCase('GET /v1/admin/audit?actor_id&action&since&until', sides, (s) => ({
          path: `/v1/admin/audit?${s.auditQuery}`,
          token: s.adminToken,
        })),
      );
    }
    const jobs: JobResult[] = [];
    if (process.env.BIG_JOBS !== '0') {
      log(`${backend}: keen-admin jobs`);
      for (const [name, args] of [
        ['credits verify', ['credits', 'verify', '--json']],
        ['audit verify', ['audit', 'verify', '--json']],
        ['audit export', ['audit', 'export', '--since', '2000-01-01']],
      ] as const) {
        for (const { side, daemon } of sides) {
          const r = await job(name, [...args], side, daemon);
          jobs.push(r);
        }
      }
    }
    return { backend, cases, jobs, drift };
  } finally {
    await Promise.all(daemons.map((d) => d.stop()));
    await empty.cleanup();
    await big.cleanup();
  }
}

function printResults(results: BackendResult[]): void {
  const size = sizeAt(SCALE);
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  console.log(
    `\nkeen-gateway big tables, BIG_SCALE=${SCALE}: ${size.ledger} ledger entries, ${size.audit} audit entries, ` +
      `${size.users} users, ${size.sessions} sessions; ` +
      `node ${process.version}, ${os.availableParallelism()} CPUs (${cpu}); ` +
      `autocannon ${CONNECTIONS} connections, ${SECONDS} s per side and case ` +
      `(empty, big, big, empty), daemons child processes at log level warn; load average at the end ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}\n`,
  );
  for (const r of results) {
    if (r.drift)
      console.log(
        `${r.backend}: the first ledger drift pass (verify() 30 s after start) ended ` +
          `${r.drift[0]!.toFixed(0)} s (empty) and ${r.drift[1]!.toFixed(0)} s (big) after start; ` +
          'reads measured after it\n',
      );
    if (r.cases.length) {
      console.log(
        `| ${r.backend}: case | empty req/s | big req/s | big / empty | p50 ms empty / big | ` +
          'p99 ms empty / big | non-2xx |',
      );
      console.log('|---|---:|---:|---:|---:|---:|---:|');
      for (const c of r.cases) {
        console.log(
          `| ${c.name} | ${c.empty.rps.toFixed(0)} | ${c.big.rps.toFixed(0)} | ` +
            `${(c.big.rps / c.empty.rps).toFixed(2)} | ` +
            `${c.empty.p50.toFixed(1)} / ${c.big.p50.toFixed(1)} | ` +
            `${c.empty.p99.toFixed(1)} / ${c.big.p99.toFixed(1)} | ${c.empty.non2xx + c.big.non2xx} |`,
        );
      }
      console.log('');
    }
    if (r.jobs.length) {
      const mib = (kb: number) => (Number.isFinite(kb) ? (kb / 1024).toFixed(0) : '-');
      console.log(
        `| ${r.backend}: keen-admin job | database | wall s | CLI peak RSS MiB | daemon peak RSS MiB | ` +
          'stdout MiB | outcome |',
      );
      console.log('|---|---|---:|---:|---:|---:|---|');
      for (const j of r.jobs) {
        console.log(
          `| ${j.name} | ${j.side} | ${j.seconds.toFixed(1)} | ${mib(j.cliPeakKb)} | ${mib(j.daemonPeakKb)} | ` +
            `${(j.stdoutBytes / 2 ** 20).toFixed(1)} | ${j.outcome} |`,
        );
      }
      console.log('');
    }
  }
}

if (!existsSync(MAIN)) {
  console.error('dist/ is missing: run `npm run build` first (the daemons run as child processes from dist/).');
  process.exit(2);
}
if (spawnSync('/usr/bin/time', ['-f', '%M', 'true']).status !== 0) {
  console.error('/usr/bin/time (GNU time) is needed to measure the CLI peak memory');
  process.exit(2);
}
const wanted = process.env.BENCH_BACKEND ?? (TEST_POSTGRES_URL ? 'both' : 'sqlite');
const backends: StorageBackend[] = wanted === 'both' ? ['sqlite', 'postgres'] : [wanted as StorageBackend];
if (backends.includes('postgres') && !TEST_POSTGRES_URL) {
  console.error('BENCH_BACKEND=postgres needs KEEN_TEST_POSTGRES_URL');
  process.exit(2);
}
const results: BackendResult[] = [];
for (const backend of backends) results.push(await runBackend(backend));
printResults(results);
