import type { Command } from 'commander';
import { ConfigError, loadConfig, type ResolvedConfig, SCOPES } from '../../daemon/cli-shared.js';
import { KeenClient } from '../../sdk/src/index.js';
import { CliError } from './output.js';
import { daemonAddress, profilePath, readProfiles, resolveConnection, type Connection } from './profile.js';

export interface GlobalOptions {
  /** Resolved on first read: flags, environment, the default profile, the built-in URL. */
  readonly url: string;
  /** Resolved on first read like `url`; undefined when nothing provides one. */
  readonly apiKey: string | undefined;
  profile?: string;
  json?: boolean;
  verbose?: boolean;
}

interface RawGlobals {
  /** The daemon's config file of init, doctor and backup (`--config`): it says where the daemon listens. */
  config?: string;
  url?: string;
  apiKey?: string;
  profile?: string;
  json?: boolean;
  verbose?: boolean;
}

const connections = new WeakMap<Command, Connection>();

function rootOf(cmd: Command): Command {
  let c = cmd;
  while (c.parent) c = c.parent;
  return c;
}

/**
 * Where this invocation connects, resolved once per process (see
 * resolveConnection for the order). Reads the profile file only when flags and
 * environment leave a setting open.
 */
export function connectionFor(cmd: Command): Connection {
  const root = rootOf(cmd);
  let conn = connections.get(root);
  if (!conn) {
    const o = cmd.optsWithGlobals<RawGlobals>();
    const file = profilePath(process.env);
    conn = resolveConnection(
      { url: o.url, apiKey: o.apiKey, profile: o.profile },
      process.env,
      () => readProfiles(file),
      file,
      () => daemonAddress(process.env, o.config),
    );
    connections.set(root, conn);
  }
  return conn;
}

/**
 * The root options, from any subcommand. `url` and `apiKey` are resolved when
 * first read, so commands that never connect (init, doctor, completion) are
 * not stopped by a broken profile file.
 */
export function globals(cmd: Command): GlobalOptions {
  const o = cmd.optsWithGlobals<RawGlobals>();
  return {
    ...(o.profile !== undefined ? { profile: o.profile } : {}),
    ...(o.json !== undefined ? { json: o.json } : {}),
    ...(o.verbose !== undefined ? { verbose: o.verbose } : {}),
    get url() {
      return connectionFor(cmd).url;
    },
    get apiKey() {
      return connectionFor(cmd).apiKey;
    },
  };
}

/**
 * The admin API client, with the key from --api-key, KEEN_API_KEY or a saved
 * profile (`keen-admin login`). `timeout`: how long to wait for an answer to
 * start (default 15 s; the verify commands wait longer, the daemon answers at the end).
 */
export function clientFor(cmd: Command, options: { timeout?: number } = {}): KeenClient {
  const { url, apiKey } = connectionFor(cmd);
  if (!apiKey)
    throw new CliError('no API key: run keen-admin login, or set KEEN_API_KEY (or pass --api-key)', 2, 'NO_API_KEY');
  return new KeenClient({ baseUrl: url, apiKey, maxRetries: 1, timeout: options.timeout ?? 15_000 });
}

/** Said once when the key was passed as an argument: anyone on the machine can read it from `ps`, and it stays in shell history. */
export function warnIfKeyInArguments(root: Command): void {
  if (root.getOptionValueSource('apiKey') === 'cli') {
    process.stderr.write(
      'keen-admin: warning: --api-key is visible in ps and shell history; use KEEN_API_KEY or keen-admin login instead\n',
    );
  }
}

/** Reads a password from standard input (`--password-stdin`): the whole input, without the final newline. */
export async function readStdinSecret(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/** `30d`, `12h`, `90m` or a future date -> ISO date-time; a bare number or a past date is a usage error. */
export function parseExpiry(value: string, option = '--expires'): string {
  const m = /^(\d+)([dhm])$/.exec(value.trim());
  if (m) {
    const ms = Number(m[1]) * { d: 86_400_000, h: 3_600_000, m: 60_000 }[m[2] as 'd' | 'h' | 'm'];
    return new Date(Date.now() + ms).toISOString();
  }
  // A bare number is not a date (Date.parse reads "90" as the year 1990): the unit was forgotten.
  const t = /^\d+$/.test(value.trim()) ? NaN : Date.parse(value);
  if (!Number.isFinite(t))
    throw new CliError(
      `${option}: "${value}" is not a lifetime or a date: use 90d, 12h, 30m or a date (2027-01-31)`,
      2,
      'INVALID_ARGUMENT',
    );
  if (t <= Date.now())
    throw new CliError(
      `${option}: ${new Date(t).toISOString()} is in the past: use a lifetime (90d, 12h, 30m) or a future date`,
      2,
      'INVALID_ARGUMENT',
    );
  return new Date(t).toISOString();
}

/** `--grace 24h` (also 30s, 90m, 7d, or 0 for none) as seconds; a bare number other than 0 is refused (the unit was forgotten). */
export function parseGrace(value: string): number {
  const v = value.trim();
  if (v === '0') return 0;
  const m = /^(\d+)([smhd])$/.exec(v);
  if (!m)
    throw new CliError(`--grace: "${value}" is not a duration: use 0, 30s, 90m, 24h or 7d`, 2, 'INVALID_ARGUMENT');
  const seconds = Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as 's' | 'm' | 'h' | 'd'];
  if (seconds > 30 * 86_400) throw new CliError(`--grace: ${value} is longer than 30 days`, 2, 'INVALID_ARGUMENT');
  return seconds;
}

/** `--scopes a,b`: each must be one of SCOPES; an unknown one is a usage error that lists them. */
export function parseScopes(value: string): string[] {
  const scopes = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
  if (unknown.length > 0 || scopes.length === 0) {
    throw new CliError(
      `--scopes: ${unknown.length ? `unknown scope${unknown.length === 1 ? '' : 's'} ${unknown.map((s) => `"${s}"`).join(', ')}` : 'empty list'}; allowed: ${SCOPES.join(', ')}`,
      2,
      'INVALID_ARGUMENT',
    );
  }
  return scopes;
}

export function parsePositiveInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new CliError(`${name}: expected a positive integer, got "${value}"`, 2);
    return n;
  };
}

/**
 * The daemon's configuration, for commands that work on its files directly
 * (init, backup): `--config FILE` or $KEEN_CONFIG, and the KEEN_* variables.
 * An invalid file is exit 1 with INVALID_CONFIG.
 */
export function daemonConfig(file: string | undefined): ResolvedConfig {
  try {
    return loadConfig({ file, env: process.env });
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message, 1, 'INVALID_CONFIG');
    throw err;
  }
}
