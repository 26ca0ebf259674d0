import { expect } from 'chai';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  accessLogger,
  BufferedDestination,
  createLogger,
  flushLogger,
  isoNow,
  jsonString,
  type AccessFields,
} from '../../daemon/logger.js';

/** A logger writing into an array, one entry per line. */
function capture(level = 'info') {
  const lines: string[] = [];
  const logger = createLogger(level, { write: (s: string) => void lines.push(s) });
  return { logger, lines };
}

const FIELDS: AccessFields = {
  reqId: 'req_0123456789',
  method: 'GET',
  route: '/v1/credits/balance',
  path: '/v1/credits/balance',
  status: 200,
  ms: 1.3,
  ip: '127.0.0.1',
};

/** Strings an attacker controls on the way into the access line (the path above all), and what JSON makes hard. */
const HOSTILE = [
  '/a"b',
  '/a\\b',
  '/a\\"},"level":"fatal","x":"',
  '/line\nbreak',
  '/cr\rlf',
  '/nul\u0000byte',
  '/ctl\u0001\u001f\u007f',
  '/tab\there',
  '/sep\u2028\u2029',
  '/lone\ud800surrogate',
  '/lone\udfffother',
  '/emoji\u{1f600}',
  '/latin1\u00e9\u00ff',
  '/\u001b[31mred',
  '',
];

describe('logger: the access line', () => {
  it('is the line pino writes for the same fields, key for key, with the bindings of the logger', () => {
    for (const bindings of [null, { component: 'edge' }]) {
      const a = capture();
      const b = capture();
      const left = bindings ? a.logger.child(bindings) : a.logger;
      const right = bindings ? b.logger.child(bindings) : b.logger;
      const f = FIELDS;
      for (const level of ['info', 'error'] as const) {
        accessLogger(left)(level, f);
        right[level](
          { req_id: f.reqId, method: f.method, route: f.route, path: f.path, status: f.status, ms: f.ms, ip: f.ip },
          'request',
        );
      }
      expect(a.lines).to.have.length(2);
      const strip = (l: string) => l.replace(/"time":"[^"]+"/, '"time":"T"');
      expect(a.lines.map(strip)).to.deep.equal(b.lines.map(strip));
      expect(JSON.parse(a.lines[0]!)).to.include({
        level: 'info',
        service: 'keen-gateway',
        msg: 'request',
        req_id: f.reqId,
        ms: 1.3,
      });
    }
  });

  it('stays one JSON line whatever the path holds, and keeps every character of it', () => {
    const { logger, lines } = capture();
    const write = accessLogger(logger);
    for (const path of HOSTILE) write('info', { ...FIELDS, path, route: path, method: path, reqId: path, ip: path });
    expect(lines).to.have.length(HOSTILE.length);
    lines.forEach((line, i) => {
      expect(line.indexOf('\n'), JSON.stringify(line)).to.equal(line.length - 1);
      expect(line.slice(0, -1)).not.to.match(/[\u0000-\u001f]/);
      const parsed = JSON.parse(line) as Record<string, unknown>;
      for (const key of ['path', 'route', 'method', 'req_id', 'ip'])
        expect(parsed[key], `${key} of ${JSON.stringify(HOSTILE[i])}`).to.equal(HOSTILE[i]);
      expect(Object.keys(parsed)).to.deep.equal([
        'level',
        'time',
        'service',
        'req_id',
        'method',
        'route',
        'path',
        'status',
        'ms',
        'ip',
        'msg',
      ]);
      expect(parsed.level).to.equal('info');
      expect(parsed.msg).to.equal('request');
    });
  });

  it('escapes exactly as JSON.stringify does', () => {
    const all = Array.from({ length: 0x800 }, (_, c) => String.fromCharCode(c)).join('') + '\ud800\udc00\ud800x\udc00';
    for (const s of [all, ...HOSTILE, 'plain', 'req_01jabc']) expect(jsonString(s)).to.equal(JSON.stringify(s));
  });

  it('follows the level: debug lines are not written at info, only error lines at warn', () => {
    const info = capture('info');
    accessLogger(info.logger)('debug', FIELDS);
    accessLogger(info.logger)('info', FIELDS);
    expect(info.lines).to.have.length(1);
    const warn = capture('warn');
    accessLogger(warn.logger)('info', FIELDS);
    accessLogger(warn.logger)('error', { ...FIELDS, status: 500 });
    expect(warn.lines.map((l) => JSON.parse(l).level)).to.deep.equal(['error']);
    const silent = capture('silent');
    accessLogger(silent.logger)('error', FIELDS);
    expect(silent.lines).to.deep.equal([]);
  });

  it("has the time of pino's isoTime", () => {
    const before = Date.now();
    const t = Date.parse(isoNow());
    expect(isoNow()).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(t).to.be.within(before, Date.now());
    const { logger, lines } = capture();
    logger.info('x');
    expect(JSON.parse(lines[0]!).time).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });
});

describe('logger: redaction of everything else', () => {
  it('still blanks secrets in any other log object, at the top and one level down, on children too', () => {
    const { logger, lines } = capture();
    logger.info(
      { authorization: 'Bearer canary-1', token: 'canary-2', nested: { password: 'canary-3', api_key: 'canary-4' } },
      'x',
    );
    logger
      .child({ component: 'c' })
      .warn({ secret: 'canary-5', req: { headers: { authorization: 'canary-6', cookie: 'canary-7' } } }, 'y');
    accessLogger(logger)('info', FIELDS);
    const text = lines.join('');
    expect(text).not.to.include('canary-');
    expect(text.match(/\[REDACTED\]/g)).to.have.length(7);
  });
});

describe('logger: the buffered destination', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'keen-logger-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('returns at once and writes every line, in order, by the time flush() resolves', async () => {
    const file = path.join(dir, 'log');
    const fd = openSync(file, 'a');
    try {
      const dest = new BufferedDestination(fd);
      const logger = createLogger('info', dest);
      const access = accessLogger(logger);
      for (let i = 0; i < 100; i++) access('info', { ...FIELDS, path: `/p/${i}` });
      // Nothing was written yet: a few lines wait (25 ms at most) to go in one write with the next ones.
      expect(readFileSync(file, 'utf8')).to.equal('');
      await new Promise((r) => setTimeout(r, 100));
      expect(readFileSync(file, 'utf8').split('\n')).to.have.length(101);
      // Many lines (64 KiB) go at once, asynchronously.
      for (let i = 100; i < 5000; i++) access('info', { ...FIELDS, path: `/p/${i}` });
      logger.info({ token: 'canary' }, 'last');
      await flushLogger(logger);
      const lines = readFileSync(file, 'utf8').split('\n');
      expect(lines.pop()).to.equal('');
      expect(lines).to.have.length(5001);
      lines.slice(0, 5000).forEach((l, i) => expect(JSON.parse(l).path).to.equal(`/p/${i}`));
      expect(JSON.parse(lines[5000]!)).to.include({ msg: 'last', token: '[REDACTED]' });
    } finally {
      closeSync(fd);
    }
  });

  it('writes lines that arrive while a write is under way in the next write, and flush() waits for both', async () => {
    const file = path.join(dir, 'log');
    const fd = openSync(file, 'a');
    try {
      const dest = new BufferedDestination(fd);
      dest.write('{"n":1}\n');
      await new Promise((r) => setImmediate(r));
      dest.write('{"n":2}\n');
      const flushed = dest.flush();
      dest.write('{"n":3}\n');
      await flushed;
      await dest.flush();
      expect(readFileSync(file, 'utf8')).to.equal('{"n":1}\n{"n":2}\n{"n":3}\n');
      await dest.flush();
    } finally {
      closeSync(fd);
    }
  });

  it('writes what it holds synchronously with writeSyncAtExit() (process exit)', () => {
    const file = path.join(dir, 'log');
    const fd = openSync(file, 'a');
    try {
      const dest = new BufferedDestination(fd);
      dest.write('{"a":1}\n');
      dest.write('{"b":2}\n');
      dest.writeSyncAtExit();
      expect(readFileSync(file, 'utf8')).to.equal('{"a":1}\n{"b":2}\n');
    } finally {
      closeSync(fd);
    }
  });

  it('reports lines it could not write (a full disk) in the next line it writes', async () => {
    const full = openSync('/dev/full', 'w');
    try {
      const dest = new BufferedDestination(full);
      dest.write('{"a":1}\n');
      dest.write('{"b":2}\n');
      await dest.flush();
      // The same destination object cannot be re-pointed; what matters is what it would write next.
      const line = (dest as unknown as { take(): Buffer }).take().toString();
      expect(JSON.parse(line)).to.include({ level: 'error', dropped_lines: 2 });
      expect(JSON.parse(line).msg).to.include('ENOSPC');
    } finally {
      closeSync(full);
    }
  });
});
