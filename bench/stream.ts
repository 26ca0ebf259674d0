/**
 * `node --import tsx bench/stream.ts`: stream fan-out latency, from the line an
 * agent writes on stdout to its receipt by each subscribed WebSocket client.
 *
 * The agent (written to a temp file) stamps every log line with its wall clock
 * (`performance.timeOrigin + performance.now()`); each client subtracts that
 * from its receipt time. A sample therefore covers the agent's pipe, the
 * runner's line parsing, storing the event (SQLite), the bus, one JSON
 * serialization per event, the WebSocket writes and the client's parsing.
 * The daemon runs in this process; the clients run in a worker thread (their
 * own event loop), on the same machine. Bounded in time: every wait has a deadline.
 *
 * BENCH_CLIENTS (1000), BENCH_EVENTS (100), BENCH_INTERVAL_MS (20).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';

const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 1000);
const EVENTS = Number(process.env.BENCH_EVENTS ?? 100);
const INTERVAL_MS = Number(process.env.BENCH_INTERVAL_MS ?? 20);
const DEADLINE_MS = 120_000;

interface ClientJob {
  url: string;
  token: string;
  clients: number;
}

/**
 * The clients, as plain JavaScript run in a worker thread (its own event loop):
 * they connect, say when all are subscribed, and report their latencies once
 * every client saw the session's final status.
 */
const CLIENT_WORKER = `
const { parentPort, workerData: job } = require('node:worker_threads');
const now = () => performance.timeOrigin + performance.now();
(async () => {
  const { WebSocket } = await import('ws');
  const latencies = [];
  const sockets = [];
  let finals = 0;
  // Connect in batches: 1,000 handshakes at once would only measure the accept queue.
  for (let i = 0; i < job.clients; i += 100) {
    await Promise.all(Array.from({ length: Math.min(100, job.clients - i) }, () => {
      const ws = new WebSocket(job.url, { headers: { authorization: 'Bearer ' + job.token } });
      sockets.push(ws);
      ws.on('message', (data) => {
        const at = now();
        const m = JSON.parse(String(data));
        if (m.type === 'agent.log' && m.data && String(m.data.message).startsWith('t=')) latencies.push(at - Number(m.data.message.slice(2)));
        if (m.type === 'session.status' && m.data.status !== 'running' && ++finals === job.clients) {
          for (const s of sockets) s.terminate();
          parentPort.postMessage({ kind: 'done', latencies });
        }
      });
      return new Promise((resolve, reject) => { ws.once('message', () => resolve()); ws.once('error', reject); });
    }));
  }
  parentPort.postMessage({ kind: 'ready' });
})();
`;

await main();

async function main(): Promise<void> {
  const { startDaemon } = await import('../test/helpers/daemon.js');
  const { buildUser } = await import('../test/helpers/factories.js');
  const { execute, grant, waitForEnd } = await import('../test/helpers/sessions.js');
  type TestDaemon = Awaited<ReturnType<typeof startDaemon>>;

  const AGENT = `
import { existsSync } from 'node:fs';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
for await (const _ of process.stdin) break;
const emit = (e) => process.stdout.write(JSON.stringify(e) + '\\n');
// Waits for the bench to say every client is subscribed (a file in the workspace).
for (let i = 0; i < 6000 && !existsSync('go'); i++) await sleep(10);
for (let i = 0; i < ${EVENTS}; i++) {
  emit({ type: 'log', level: 'info', message: 't=' + (performance.timeOrigin + performance.now()) });
  await sleep(${INTERVAL_MS});
}
emit({ type: 'result', status: 'completed', summary: 'bench' });
`;

  interface Row {
    clients: number;
    samples: number;
    missing: number;
    p50: number;
    p90: number;
    p99: number;
    max: number;
    /** Time the in-process bus spends handing one event to every subscriber (the daemon's fan-out work). */
    dispatchP50: number;
    dispatchP99: number;
  }

  /** Times each synchronous publish on the memory bus: the stream's serialization and writes to every client. */
  const dispatchTimes: number[] = [];
  const quantile = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? NaN;

  async function run(d: TestDaemon, clients: number): Promise<Row> {
    const deadline = Date.now() + DEADLINE_MS;
    const u = await buildUser(d, { tier: 'enterprise' });
    await grant(d, u, 100);
    const r = await execute(d, u, 'Stream fan-out benchmark run', { costBudget: 1 });
    if (r.status !== 200) throw new Error(`execute failed: ${r.status} ${r.text}`);
    const id = r.body.session.id as string;
    dispatchTimes.length = 0;
    const worker = new Worker(CLIENT_WORKER, {
      eval: true,
      workerData: {
        url: `${d.url.replace(/^http/, 'ws')}/v1/stream?sessions=${id}`,
        token: u.token,
        clients,
      } satisfies ClientJob,
    });
    const done = new Promise<number[]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('clients did not see the end in time')), DEADLINE_MS);
      worker.on('message', (m: { kind: string; latencies?: number[] }) => {
        if (m.kind === 'ready') {
          const ws0 = path.join(d.config.workspaces.root, id);
          void (async () => {
            // The supervisor makes the workspace just after execute answers.
            while (!existsSync(ws0) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
            writeFileSync(path.join(ws0, 'go'), '');
          })();
        }
        if (m.kind === 'done') {
          clearTimeout(timer);
          resolve(m.latencies!);
        }
      });
      worker.on('error', reject);
    });
    const latencies = await done.finally(() => void worker.terminate());
    await waitForEnd(d, u, id, 30_000);
    latencies.sort((a, b) => a - b);
    const q = (p: number) => quantile(latencies, p);
    const dispatch = [...dispatchTimes].sort((a, b) => a - b);
    return {
      clients,
      samples: latencies.length,
      missing: clients * EVENTS - latencies.length,
      p50: q(0.5),
      p90: q(0.9),
      p99: q(0.99),
      max: latencies.at(-1) ?? NaN,
      dispatchP50: quantile(dispatch, 0.5),
      dispatchP99: quantile(dispatch, 0.99),
    };
  }

  const nproc = availableParallelism();
  const dir = mkdtempSync(path.join(tmpdir(), 'keen-bench-agent-'));
  const agent = path.join(dir, 'agent.mjs');
  writeFileSync(agent, AGENT);
  const d = await startDaemon({
    logLevel: 'warn',
    config: { agent: { command: ['node', agent] }, tiers: { enterprise: { requests_per_hour: 1_000_000 } } },
  });
  const bus = d.container.bus;
  const publish = bus.publish.bind(bus);
  bus.publish = async (envelope) => {
    const t = performance.now();
    const p = publish(envelope);
    dispatchTimes.push(performance.now() - t);
    return p;
  };
  try {
    d.container.stream.tune({ maxConnectionsPerUser: CLIENTS + 10 });
    const rows = [await run(d, 1), await run(d, Math.ceil(CLIENTS / 10)), await run(d, CLIENTS)];
    const f = (n: number) => n.toFixed(1);
    console.log(
      `\nStream fan-out, agent stdout line -> client receipt: ${EVENTS} events, one every ${INTERVAL_MS} ms; SQLite, memory bus; clients in a worker thread\n`,
    );
    console.log(
      '| clients | samples | missing | p50 ms | p90 ms | p99 ms | max ms | daemon fan-out per event p50 / p99 ms |',
    );
    console.log('|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of rows)
      console.log(
        `| ${r.clients} | ${r.samples} | ${r.missing} | ${f(r.p50)} | ${f(r.p90)} | ${f(r.p99)} | ${f(r.max)} | ${f(r.dispatchP50)} / ${f(r.dispatchP99)} |`,
      );
    console.log(
      `\n(${nproc} CPUs, load average ${loadavg()[0]!.toFixed(1)} at the end; the fan-out column is the synchronous hand-over to every client's socket.)`,
    );
  } finally {
    await d.stop();
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
  }
  process.exit(0);
}
