/** Error rendering and exit codes shared by every keen-admin command. */
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

export function exitCodeFor(err: unknown): number {
  return err instanceof CliError ? err.exitCode : 1;
}

/** One readable line on stderr: code, message and request id; the stack only with --verbose. */
export function printError(err: unknown, opts: { verbose?: boolean; json?: boolean }): void {
  const e = err as CliError;
  if (opts.json) {
    process.stderr.write(JSON.stringify({ error: { code: e.code ?? 'ERROR', message: e.message, request_id: e.requestId ?? null } }) + '\n');
  } else {
    const parts = [`keen-admin: ${e.code ? `${e.code}: ` : ''}${e.message}`];
    if (e.requestId) parts.push(`(request ${e.requestId})`);
    process.stderr.write(parts.join(' ') + '\n');
  }
  if (opts.verbose && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
}
