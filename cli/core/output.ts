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
    process.stderr.write(
      JSON.stringify({ success: false, error: { code: code ?? 'ERROR', message: e.message, request_id: requestId } }) +
        '\n',
    );
  } else {
    const type = err instanceof KeenError && err.type !== code ? `${err.type} ` : '';
    process.stderr.write(
      `keen-admin: ${type}${code ? `${code}: ` : ''}${e.message}${requestId ? ` (request ${requestId})` : ''}\n`,
    );
  }
  if (opts.verbose && e.stack) process.stderr.write(e.stack + '\n');
}

export interface OutputOptions {
  json?: boolean;
}

/** Prints a result: the JSON document with --json, else an aligned table of `rows` with `columns`. */
export function printResult(
  opts: OutputOptions,
  json: unknown,
  rows: Array<Record<string, unknown>>,
  columns: string[],
): void {
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
    return String(v).replace(
      /[\u0000-\u001f\u007f-\u009f]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
    );
  };
  const data = rows.map((r) => columns.map((c) => cell(r[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...data.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
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

/**
 * Escapes what could let a value rewrite the terminal or forge a line: C0/C1
 * control characters (newline, ESC, ...), line and paragraph separators and
 * bidirectional overrides, each printed as `\uXXXX`. For text that comes from
 * outside (agent output, audit details, names).
 */
export function escapeText(value: string): string {
  return value.replace(
    /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** Where colour is decided: the stream written to, the environment, `--no-color` (commander's `color: false`). */
export interface ColorContext {
  stream?: { isTTY?: boolean };
  env?: Record<string, string | undefined>;
  color?: boolean;
}

/**
 * Colour only for a person at a terminal: stdout is a TTY, `NO_COLOR` is unset
 * or empty (https://no-color.org: any non-empty value disables it) and
 * `--no-color` was not given. Never in a pipe or a file.
 */
export function colorEnabled(ctx: ColorContext = {}): boolean {
  const stream = ctx.stream ?? process.stdout;
  const env = ctx.env ?? process.env;
  if (ctx.color === false) return false;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  return stream.isTTY === true;
}

const SGR = { bold: 1, dim: 2, red: 31, green: 32, yellow: 33, blue: 34, magenta: 35, cyan: 36 } as const;
export type Style = keyof typeof SGR;

/** Wraps already escaped text in one SGR style when `enabled`; the text itself is never changed. */
export function paint(enabled: boolean, style: Style | null, text: string): string {
  return enabled && style ? `\u001b[${SGR[style]}m${text}\u001b[0m` : text;
}
