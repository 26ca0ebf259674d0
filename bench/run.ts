/**
 * `npm run bench`: requests per second and latency of the daemon's hot paths,
 * loopback only, bounded in time, each figure also as a ratio to the bare
 * endpoint measured in the same run. Prints a Markdown table.
 */
import http from 'node:http';
import argon2 from 'argon2';
import { ARGON2_OPTIONS } from '../daemon/auth/passwords.js';
import { startDaemon } from '../test/helpers/daemon.js';
import { buildApiKey, buildUser } from '../test/helpers/factories.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);

interface Result {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

async function load(name: string, url: string, headers: Record<string, string>): Promise<Result> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const latencies: number[] = [];
  let errors = 0;
  const end = Date.now() + SECONDS * 1000;
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
      while (Date.now() < end) await one();
    }),
  );
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0;
  return { name, rps: latencies.length / SECONDS, p50: q(0.5), p99: q(0.99), errors };
}

const d = await startDaemon({ logLevel: 'warn', config: { tiers: { individual: { requests_per_hour: 10_000_000 } } } });
try {
  const u = await buildUser(d);
  const k = await buildApiKey(d, u, { rate_limit_per_hour: 1_000_000 });
  const results: Result[] = [];
  results.push(await load('(a) GET /health/live (bare)', `${d.url}/health/live`, {}));
  results.push(await load('(b) GET /v1/me with a JWT', `${d.url}/v1/me`, { authorization: `Bearer ${u.token}` }));
  results.push(await load('(c) GET /v1/me with an API key', `${d.url}/v1/me`, { authorization: `ApiKey ${k.key}` }));
  const base = results[0]!.rps;
  const t0 = Date.now();
  const n = 10;
  const hash = await argon2.hash('benchmark-password-123', ARGON2_OPTIONS);
  for (let i = 0; i < n; i++) await argon2.verify(hash, 'benchmark-password-123');
  const loginMs = (Date.now() - t0) / n;
  console.log(`\n${CONNECTIONS} connections, ${SECONDS} s each, SQLite, in-process limiter, node ${process.version}\n`);
  console.log('| endpoint | req/s | p50 ms | p99 ms | errors | ratio to (a) |');
  console.log('|---|---|---|---|---|---|');
  for (const r of results) {
    console.log(`| ${r.name} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.errors} | ${(r.rps / base).toFixed(2)} |`);
  }
  console.log(`\nargon2id verify (19 MiB, t=2, p=1), one at a time: ${loginMs.toFixed(1)} ms`);
} finally {
  await d.stop();
}
