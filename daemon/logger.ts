import { write, writeSync } from 'node:fs';
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/**
 * Paths pino blanks out wherever they appear in a log object. Request logs carry
 * only method, route, path (never the query string) and status, so these are a
 * second line of defence for anything a caller passes in by mistake.
 */
export const REDACT_PATHS = [
  'authorization',
  'password',
  'new_password',
  'token',
  'access_token',
  'refresh_token',
  'mfa_token',
  'api_key',
  'apiKey',
  'key',
  'secret',
  'ticket',
  'recovery_code',
  'recovery_codes',
  'jwt_secret',
  '*.authorization',
  '*.password',
  '*.token',
  '*.access_token',
  '*.refresh_token',
  '*.mfa_token',
  '*.api_key',
  '*.key',
  '*.secret',
  '*.ticket',
  '*.recovery_codes',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'headers.cookie',
];

let lastMs = -1;
let lastIso = '';

/** `new Date().toISOString()`, computed at most once per millisecond (many log lines share one). */
export function isoNow(): string {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastIso = new Date(now).toISOString();
  }
  return lastIso;
}

/** pino's `isoTime`, from the cached clock: the same text, without a Date per line. */
const isoTime = (): string => `,"time":"${isoNow()}"`;

/** A string needs JSON escaping if it holds a quote, a backslash, a control character or half a surrogate pair. */
const NEEDS_ESCAPE = /[\u0000-\u001f"\\\ud800-\udfff]/;

/** `JSON.stringify(s)` for a string, without its work when nothing needs escaping (the usual case). */
export function jsonString(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`;
}

/** Lines the destination holds while its writer cannot keep up, at most (then new lines are counted and dropped). */
const MAX_PENDING_CHARS = 64 * 1024 * 1024;
/** A write refused with EAGAIN (a full non-blocking pipe) is tried again after this long. */
const RETRY_MS = 10;
/** Lines wait at most this long for a write... */
const FLUSH_MS = 25;
/** ...or until this much has come in. One write, a trip through the thread pool, costs tens of µs. */
const FLUSH_CHARS = 64 * 1024;

/**
 * The daemon's log destination: lines are appended to a buffer in memory and written by
 * asynchronous writes (libuv's thread pool), one at a time, each carrying every line that came
 * in meanwhile: at most FLUSH_MS after a line came, or as soon as FLUSH_CHARS are waiting. A log
 * line never waits for the disk or for a slow pipe reader, and a busy daemon makes one write for
 * hundreds of lines instead of one per line.
 *
 * Nothing is lost at exit: `flush()` resolves once every line written so far is on the file
 * (main.ts awaits it on SIGTERM and SIGINT, and on an uncaught exception), and `writeSyncAtExit()`
 * writes what is left on any other exit (`process.exit`); then only a write already handed to
 * the thread pool is not waited for (it runs unless the machine stops).
 */
export class BufferedDestination implements DestinationStream {
  private pending: string[] = [];
  private pendingChars = 0;
  private writing = false;
  private timer: NodeJS.Timeout | null = null;
  private disabled = false;
  /** Lines dropped (buffer full or a failed write), reported in the next line written. */
  private dropped = 0;
  private dropReason = '';
  private waiters: Array<() => void> = [];

  constructor(readonly fd: number) {}

  write(line: string): void {
    if (this.disabled) return;
    if (this.pendingChars + line.length > MAX_PENDING_CHARS) {
      this.drop(1, 'the log destination is slower than the daemon');
      return;
    }
    this.pending.push(line);
    this.pendingChars += line.length;
    if (this.writing) return;
    if (this.pendingChars >= FLUSH_CHARS) this.next();
    else this.arm();
  }

  private arm(): void {
    if (this.timer) return;
    // Unreferenced: a daemon with nothing else to do exits, and its exit hook writes what is left.
    this.timer = setTimeout(() => this.next(), FLUSH_MS);
    this.timer.unref();
  }

  /** Resolves once every line written before the call is on the file descriptor (or could not be). */
  flush(): Promise<void> {
    if (!this.writing && this.pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      if (!this.writing) this.next();
    });
  }

  /**
   * Writes what is buffered, synchronously: for `process.on('exit')`, where nothing asynchronous runs.
   * Not named `flushSync`: pino calls that after every `fatal` line, and a synchronous write while an
   * asynchronous one is under way would put lines out of order (main.ts awaits `flush()` instead).
   */
  writeSyncAtExit(): void {
    if (this.disabled || this.pending.length === 0) return;
    const buf = this.take();
    let off = 0;
    const until = Date.now() + 2000;
    while (off < buf.length) {
      try {
        off += writeSync(this.fd, buf, off);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() > until) return;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
      }
    }
  }

  private take(): Buffer {
    let text = this.pending.length === 1 ? this.pending[0]! : this.pending.join('');
    this.pending = [];
    this.pendingChars = 0;
    if (this.dropped > 0) {
      text += droppedLine(this.dropped, this.dropReason);
      this.dropped = 0;
    }
    return Buffer.from(text);
  }

  private next(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.pending.length === 0 || this.disabled) {
      this.settle();
      return;
    }
    this.writing = true;
    const lines = this.pending.length;
    this.writeFrom(this.take(), 0, lines);
  }

  private writeFrom(buf: Buffer, off: number, lines: number): void {
    write(this.fd, buf, off, buf.length - off, null, (err, n) => {
      if (err) {
        if (err.code === 'EAGAIN') {
          setTimeout(() => this.writeFrom(buf, off, lines), RETRY_MS);
          return;
        }
        // The reader is gone (EPIPE) or the descriptor closed: nothing more can be written, as pino does.
        if (err.code === 'EPIPE' || err.code === 'EBADF') this.disabled = true;
        else this.drop(lines, `the log could not be written (${err.code ?? 'error'})`);
      } else if (off + n < buf.length) {
        this.writeFrom(buf, off + n, lines);
        return;
      }
      this.writing = false;
      // What came in meanwhile goes now if someone waits for it or it is already large, else after FLUSH_MS.
      if (this.pending.length === 0 || this.disabled) this.settle();
      else if (this.waiters.length > 0 || this.pendingChars >= FLUSH_CHARS) this.next();
      else this.arm();
    });
  }

  private settle(): void {
    this.writing = false;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private drop(lines: number, reason: string): void {
    this.dropped += lines;
    this.dropReason = reason;
  }
}

function droppedLine(count: number, reason: string): string {
  const msg = jsonString(`${reason}: log lines were dropped`);
  return `{"level":"error","time":"${isoNow()}","service":"keen-gateway","dropped_lines":${count},"msg":${msg}}\n`;
}

let stdout: BufferedDestination | null = null;

/** The process's standard output as a buffered destination: one per process, written out at exit. */
export function stdoutDestination(): BufferedDestination {
  if (!stdout) {
    const dest = new BufferedDestination(1);
    process.on('exit', () => dest.writeSyncAtExit());
    stdout = dest;
  }
  return stdout;
}

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'keen-gateway' },
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      timestamp: isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? stdoutDestination(),
  );
}

/** Writes out what the logger's destination holds, when it buffers (see BufferedDestination). */
export async function flushLogger(logger: Logger): Promise<void> {
  const stream = (logger as unknown as Record<symbol, unknown>)[pino.symbols.streamSym];
  if (stream instanceof BufferedDestination) await stream.flush();
}

/** The fields of the access-log line, all of them known to carry no secret (the path has no query string). */
export interface AccessFields {
  reqId: string;
  method: string;
  route: string;
  path: string;
  status: number;
  ms: number;
  ip: string | undefined;
}

export type AccessLevel = 'debug' | 'info' | 'error';

/**
 * The access-log line (one per request, `"msg":"request"`), written by hand: the same JSON line
 * pino writes for `logger[level]({ req_id, method, route, path, status, ms, ip }, 'request')`,
 * with the logger's bindings, key for key, but without pino's per-call work (the redaction pass,
 * the generic serializer, a Date per line). Every string field is escaped (jsonString); numbers
 * are numbers. Any other object still goes through pino and its redaction paths.
 */
export function accessLogger(logger: Logger): (level: AccessLevel, f: AccessFields) => void {
  const internals = logger as unknown as Record<symbol, unknown>;
  const stream = internals[pino.symbols.streamSym] as DestinationStream;
  const bindings = String(internals[pino.symbols.chindingsSym] ?? '');
  const heads = {
    debug: `{"level":"debug","time":"`,
    info: `{"level":"info","time":"`,
    error: `{"level":"error","time":"`,
  };
  return (level, f) => {
    if (!logger.isLevelEnabled(level)) return;
    stream.write(
      `${heads[level]}${isoNow()}"${bindings},"req_id":${jsonString(f.reqId)},"method":${jsonString(f.method)}` +
        `,"route":${jsonString(f.route)},"path":${jsonString(f.path)},"status":${f.status},"ms":${f.ms}` +
        `${f.ip === undefined ? '' : `,"ip":${jsonString(f.ip)}`},"msg":"request"}\n`,
    );
  };
}
