import { ConnectionError, KeenError, TimeoutError } from '../../sdk/src/index.js';

/** A failure the CLI reports itself (usage, a refused operation). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: 1 | 2 | 3,
    readonly code?: string,
    readonly requestId?: string,
  ) {
    super(message);
  }
}

/** 3 when the daemon cannot be reached, 2 for usage, 1 for any failed operation. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof CliError) return err.exitCode;
  if (err instanceof ConnectionError || err instanceof TimeoutError) return 3;
  return 1;
}

/** One readable line on stderr: code, message and request id; the stack only with --verbose. */
export function printError(err: unknown, opts: { verbose?: boolean; json?: boolean }): void {
  const e = err as Partial<KeenError & CliError> & Error;
  const code = e.code ?? (err instanceof KeenError ? err.code : undefined);
  const requestId = (err instanceof KeenError ? err.requestId : e.requestId) ?? null;
  if (opts.json) {
    process.stderr.write(JSON.stringify({ success: false, error: { code: code ?? 'ERROR', message: e.message, request_id: requestId } }) + '\n');
  } else {
    const type = err instanceof KeenError && err.type !== code ? `${err.type} ` : '';
    process.stderr.write(`keen-admin: ${type}${code ? `${code}: ` : ''}${e.message}${requestId ? ` (request ${requestId})` : ''}\n`);
  }
  if (opts.verbose && e.stack) process.stderr.write(e.stack + '\n');
}

export interface OutputOptions {
  json?: boolean;
}

/** Prints a result: the JSON document with --json, else an aligned table of `rows` with `columns`. */
export function printResult(opts: OutputOptions, json: unknown, rows: Array<Record<string, unknown>>, columns: string[]): void {
  if (opts.json) {
    process.stdout.write(JSON.stringify(json) + '\n');
    return;
  }
  process.stdout.write(table(rows, columns));
}

export function table(rows: Array<Record<string, unknown>>, columns: string[]): string {
  const cell = (v: unknown): string => {
    if (v === null || v === undefined) return '-';
    if (Array.isArray(v)) return v.join(',');
    // Escape control characters so a hostile value cannot rewrite the terminal.
    // eslint-disable-next-line no-control-regex
    return String(v).replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  };
  const data = rows.map((r) => columns.map((c) => cell(r[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...data.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  if (rows.length === 0) return '(none)\n';
  return [line(columns.map((c) => c.toUpperCase())), ...data.map(line)].join('\n') + '\n';
}

/** Prints a secret shown once, with a warning for people (not for --json). */
export function printSecretOnce(opts: OutputOptions, json: unknown, label: string, secret: string): void {
  if (opts.json) {
    process.stdout.write(JSON.stringify(json) + '\n');
    return;
  }
  process.stdout.write(`${label}: ${secret}\n`);
  process.stderr.write('Store it now: it is shown only once and cannot be recovered.\n');
}
