import type { Command } from 'commander';
import { KeenClient } from '../../sdk/src/index.js';
import { CliError } from './output.js';

export interface GlobalOptions {
  url: string;
  apiKey?: string;
  json?: boolean;
  verbose?: boolean;
}

/** The root options, from any subcommand. */
export function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals<GlobalOptions>();
}

/**
 * The admin API client. The key comes from KEEN_API_KEY (preferred: it stays out
 * of `ps` and shell history) or --api-key.
 */
export function clientFor(cmd: Command): KeenClient {
  const g = globals(cmd);
  const apiKey = g.apiKey ?? process.env.KEEN_API_KEY;
  if (!apiKey) throw new CliError('no API key: set KEEN_API_KEY (or pass --api-key)', 2);
  return new KeenClient({ baseUrl: g.url, apiKey, maxRetries: 1, timeout: 15_000 });
}

/** Reads a password from standard input (`--password-stdin`): the whole input, without the final newline. */
export async function readStdinSecret(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** `30d`, `12h`, `90m` or an ISO date -> ISO date-time. */
export function parseExpiry(value: string): string {
  const m = /^(\d+)([dhm])$/.exec(value);
  if (m) {
    const ms = Number(m[1]) * { d: 86_400_000, h: 3_600_000, m: 60_000 }[m[2] as 'd' | 'h' | 'm'];
    return new Date(Date.now() + ms).toISOString();
  }
  const t = Date.parse(value);
  if (!Number.isFinite(t)) throw new CliError(`--expires: expected 30d, 12h, 90m or a date, got "${value}"`, 2);
  return new Date(t).toISOString();
}

export function parsePositiveInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new CliError(`${name}: expected a positive integer, got "${value}"`, 2);
    return n;
  };
}
