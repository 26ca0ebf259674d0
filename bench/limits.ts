/**
 * `node --import tsx bench/limits.ts`: what the rate limiter costs an
 * authenticated request (GET /v1/me with an API key, two policies: user and
 * api_key), loopback only, a few seconds per case:
 *
 *   (a) the limiter replaced by a no-op (every batch allowed at once), the baseline;
 *   (b) the in-process memory limiter;
 *   (c) the Redis limiter (KEEN_BENCH_REDIS_URL, else KEEN_TEST_REDIS_URL, else
 *       redis://127.0.0.1:6379; skipped when it does not answer);
 *
 * The cases run in interleaved rounds (BENCH_ROUNDS, default 3; BENCH_SECONDS
 * in all per case, default 3), so a change in machine load touches all alike.
 * Then the Redis round trips per request, from `INFO commandstats` before and
 * after a fixed number of requests (BENCH_ROUND_TRIP_REQUESTS, default 1000).
 * Redis counts the commands a script runs as well; they are listed apart, as
 * they cost no round trip. Another client of the same Redis adds to the counts.
 * Prints Markdown tables.
 */
import http from 'node:http';
import { cpus, loadavg } from 'node:os';
import { Redis } from 'ioredis';
import type { BatchRequest } from '../daemon/limits/types.js';
import { startDaemon, type TestDaemon } from '../test/helpers/daemon.js';
import { buildUser } from '../test/helpers/factories.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const ROUND_TRIP_REQUESTS = Number(process.env.BENCH_ROUND_TRIP_REQUESTS ?? 1000);
const REDIS_URL = process.env.KEEN_BENCH_REDIS_URL || process.env.KEEN_TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const HUGE = { tiers: { individual: { requests_per_hour: 100_000_000 } } };

interface Result {
  latencies: number[];
  seconds: number;
  errors: number;
}

/** `CONNECTIONS` keep-alive connections sending GETs back to back for `seconds` (or `count` requests in all). */
async function load(
  url: string,
  headers: Record<string, string>,
  bound: { seconds?: number; count?: number },
): Promise<Result> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const latencies: number[] = [];
  let errors = 0;
  let started = 0;
  const t0 = process.hrtime.bigint();
  const end = Date.now() + (bound.seconds ?? 3600) * 1000;
  const more = () => (bound.count !== undefined ? started < bound.count : Date.now() < end);
  const one = () =>
    new Promise<void>((resolve) => {
      const t = process.hrtime.bigint();
      const req = http.get(url, { agent, headers }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode !== 200) errors++;
          latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
          resolve();
        });
      });
      req.on('error', () => {
        errors++;
        resolve();
      });
    });
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (more()) {
        started++;
        await one();
      }
    }),
  );
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  agent.destroy();
  return { latencies, seconds: elapsed, errors };
}

/** A daemon, a user and an API key whose limits are never reached during the run. */
async function setup(config: Record<string, unknown>): Promise<{ d: TestDaemon; headers: Record<string, string> }> {
  const d = await startDaemon({ logLevel: 'warn', config: { ...HUGE, ...config } });
  const u = await buildUser(d, { tier: 'individual' });
  const k = await d.container.users.createApiKey(null, u.user, { name: 'bench', rate_limit_per_hour: 100_000_000 });
  return { d, headers: { authorization: `ApiKey ${k.key}` } };
}

/** `cmdstat_<name>` calls from INFO commandstats (Redis counts the commands a script runs, too). */
async function commandStats(redis: Redis): Promise<Map<string, number>> {
  const text = await redis.info('commandstats');
  const calls = new Map<string, number>();
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(m[1]!, Number(m[2]));
  return calls;
}

async function redisReachable(): Promise<Redis | null> {
  const r = new Redis(REDIS_URL, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1000,
  });
  r.on('error', () => undefined);
  try {
    await r.connect();
    await r.ping();
    return r;
  } catch {
    r.disconnect();
    return null;
  }
}

async function deletePrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    if (keys.length > 0) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
}

interface Case {
  name: string;
  d: TestDaemon;
  headers: Record<string, string>;
  latencies: number[];
  seconds: number;
  errors: number;
}

const cases: Case[] = [];
const admin = await redisReachable();
try {
  // (a) no-op limiter: the rest of the middleware (policies, headers, metrics) still runs.
  const a = await setup({});
  Object.assign(a.d.container.limiter, {
    consumeAll: async (requests: BatchRequest[]) => ({
      allowed: true,
      decisions: requests.map((r) => ({
        allowed: true,
        limit: r.limit,
        remaining: r.limit,
        resetMs: 0,
        retryAfterMs: 0,
      })),
    }),
  });
  cases.push({ name: '(a) no-op limiter (baseline)', ...a, latencies: [], seconds: 0, errors: 0 });
  // (b) in-process memory limiter.
  cases.push({ name: '(b) memory limiter', ...(await setup({})), latencies: [], seconds: 0, errors: 0 });
  // (c) Redis limiter.
  if (admin)
    cases.push({
      name: '(c) Redis limiter',
      ...(await setup({ redis: { url: REDIS_URL } })),
      latencies: [],
      seconds: 0,
      errors: 0,
    });

  for (const c of cases) await load(`${c.d.url}/v1/me`, c.headers, { count: 300 });
  // Rounds, the cases interleaved, so a change in machine load touches them all alike.
  for (let round = 0; round < ROUNDS; round++) {
    for (const c of cases) {
      const r = await load(`${c.d.url}/v1/me`, c.headers, { seconds: SECONDS / ROUNDS });
      c.latencies.push(...r.latencies);
      c.seconds += r.seconds;
      c.errors += r.errors;
    }
  }

  let roundTrips: { before: Map<string, number>; after: Map<string, number>; requests: number; errors: number } | null =
    null;
  const redisCase = cases.find((c) => c.name.startsWith('(c)'));
  if (admin && redisCase) {
    const before = await commandStats(admin);
    const r = await load(`${redisCase.d.url}/v1/me`, redisCase.headers, { count: ROUND_TRIP_REQUESTS });
    const after = await commandStats(admin);
    roundTrips = { before, after, requests: r.latencies.length, errors: r.errors };
  }

  const q = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? 0;
  const rps = (c: Case) => c.latencies.length / c.seconds;
  const base = rps(cases[0]!);
  console.log(
    `\nGET /v1/me with an API key (policies user + api_key), SQLite, ${CONNECTIONS} keep-alive connections, ${ROUNDS} interleaved rounds, ${SECONDS} s per case in all, loopback, node ${process.version}, load average ${loadavg()[0]!.toFixed(1)} on ${cpus().length} CPUs\n`,
  );
  console.log('| case | req/s | p50 ms | p99 ms | requests | non-200 | req/s vs (a) |');
  console.log('|---|---|---|---|---|---|---|');
  for (const c of cases) {
    c.latencies.sort((x, y) => x - y);
    console.log(
      `| ${c.name} | ${rps(c).toFixed(0)} | ${q(c.latencies, 0.5).toFixed(2)} | ${q(c.latencies, 0.99).toFixed(2)} | ${c.latencies.length} | ${c.errors} | ${(rps(c) / base).toFixed(2)} |`,
    );
  }
  if (roundTrips) {
    const n = roundTrips.requests;
    const delta = (cmd: string) => (roundTrips!.after.get(cmd) ?? 0) - (roundTrips!.before.get(cmd) ?? 0);
    console.log(
      `\nRedis commands during ${n} requests of (c) (INFO commandstats; ${roundTrips.errors} non-200; other clients of the same Redis would add to these):\n`,
    );
    console.log('| command | calls | per request | |');
    console.log('|---|---|---|---|');
    const trips = delta('evalsha') + delta('eval');
    console.log(
      `| EVALSHA | ${delta('evalsha')} | ${(delta('evalsha') / n).toFixed(3)} | round trip: one script decides both policies |`,
    );
    console.log(`| EVAL | ${delta('eval')} | ${(delta('eval') / n).toFixed(3)} | round trip: script cache miss |`);
    console.log(`| **round trips** | **${trips}** | **${(trips / n).toFixed(3)}** | |`);
    for (const cmd of ['time', 'hgetall', 'hset', 'hincrby', 'hdel', 'pexpire']) {
      if (delta(cmd) !== 0)
        console.log(
          `| ${cmd.toUpperCase()} | ${delta(cmd)} | ${(delta(cmd) / n).toFixed(3)} | inside the script, no round trip |`,
        );
    }
  }
  if (!admin) console.log(`\n(c) skipped: no Redis answered at ${REDIS_URL}`);
} finally {
  for (const c of cases) {
    if (admin && c.name.startsWith('(c)'))
      await deletePrefix(admin, c.d.config.redis.key_prefix).catch(() => undefined);
    await c.d.stop();
  }
  admin?.disconnect();
}
