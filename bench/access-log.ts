/**
 * `node --import tsx bench/access-log.ts`: the CPU cost of one access-log line, old and new, in
 * this process (all its threads: process.cpuUsage), writing to a file as a service does.
 *
 *   pino, sync   the line as it was: pino's child logger without redaction, `{...}, 'request'`,
 *                pino's default destination (a synchronous write per line)
 *   hand, async  daemon/logger.ts: accessLogger (the line written by hand) into BufferedDestination
 *                (one asynchronous write per turn of the event loop)
 *   none         the same loop writing nothing: what the loop itself costs
 *
 * Lines come LINES_PER_TURN to a turn of the event loop (a daemon under load answers several
 * requests per turn), ROUNDS rounds interleaved; CPU time per line is reported (µs, median of rounds).
 * CPU time, not wall time: other work on the machine changes it much less.
 */
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { accessLogger, BufferedDestination, createLogger, flushLogger, REDACT_PATHS } from '../daemon/logger.js';

const LINES = Number(process.env.LINES ?? 100_000);
const LINES_PER_TURN = Number(process.env.LINES_PER_TURN ?? 20);
const ROUNDS = Number(process.env.ROUNDS ?? 5);

const fields = (i: number) => ({
  reqId: `req_01jabcdefghjkmnpqrstv${String(i % 100000).padStart(5, '0')}`,
  method: 'GET',
  route: '/v1/credits/balance',
  path: '/v1/credits/balance',
  status: 200,
  ms: 1.3,
  ip: '127.0.0.1',
});

type Writer = { line(i: number): void; done(): Promise<void>; close(): void };

function pinoSync(file: string): Writer {
  const dest = pino.destination({ dest: file, sync: true });
  const logger = pino(
    {
      level: 'info',
      base: { service: 'keen-gateway' },
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    dest,
  );
  const access = logger.child({}, { redact: [] });
  return {
    line(i) {
      const f = fields(i);
      access.info(
        { req_id: f.reqId, method: f.method, route: f.route, path: f.path, status: f.status, ms: f.ms, ip: f.ip },
        'request',
      );
    },
    async done() {},
    close: () => dest.destroy(),
  };
}

function handAsync(file: string): Writer {
  const fd = openSync(file, 'a');
  const logger = createLogger('info', new BufferedDestination(fd));
  const access = accessLogger(logger);
  return {
    line: (i) => access('info', fields(i)),
    done: () => flushLogger(logger),
    close: () => closeSync(fd),
  };
}

function none(): Writer {
  let sink = 0;
  return {
    line(i) {
      sink += fields(i).reqId.length;
    },
    async done() {
      if (sink < 0) console.log(sink);
    },
    close() {},
  };
}

/** CPU µs per line for LINES lines, LINES_PER_TURN to a turn of the event loop, flush included. */
async function run(w: Writer): Promise<number> {
  const before = process.cpuUsage();
  for (let i = 0; i < LINES; ) {
    for (let k = 0; k < LINES_PER_TURN && i < LINES; k++, i++) w.line(i);
    await new Promise((r) => setImmediate(r));
  }
  await w.done();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / LINES;
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'keen-bench-access-'));
try {
  const makers: Array<[string, () => Writer]> = [
    ['pino, sync', () => pinoSync(path.join(dir, 'pino.log'))],
    ['hand, async', () => handAsync(path.join(dir, 'hand.log'))],
    ['none', () => none()],
  ];
  const results = new Map<string, number[]>(makers.map(([n]) => [n, []]));
  for (let r = 0; r < ROUNDS + 1; r++) {
    for (let k = 0; k < makers.length; k++) {
      const [name, make] = makers[(r + k) % makers.length]!;
      const w = make();
      const us = await run(w);
      w.close();
      if (r > 0) results.get(name)!.push(us); // round 0 warms up
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(
    `${LINES} lines per round, ${LINES_PER_TURN} per turn of the event loop, ${ROUNDS} rounds; CPU µs per line:`,
  );
  const loop = median(results.get('none')!);
  for (const [name, xs] of results) {
    const m = median(xs);
    const extra = name === 'none' ? '' : `, ${(m - loop).toFixed(2)} above the bare loop`;
    console.log(`  ${name}: ${m.toFixed(2)} (rounds ${xs.map((x) => x.toFixed(2)).join(' / ')})${extra}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
