import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { loadConfig, redactUrl } from '../../daemon/cli-shared.js';
import { CliError } from './output.js';

/** Where keen-admin talks to when nothing else says so (README.md, "Operating"). */
export const DEFAULT_URL = 'http://127.0.0.1:8080';

/** A URL for messages: without its password, and without a trailing slash it did not have. */
export function shownUrl(url: string): string {
  const shown = redactUrl(url);
  return !url.endsWith('/') && shown.endsWith('/') ? shown.slice(0, -1) : shown;
}

/** One saved connection. */
export interface Profile {
  url: string;
  api_key: string;
}

/** `admin.json`: the saved connections and the one used when none is named. */
export interface ProfileFile {
  default?: string;
  profiles: Record<string, Profile>;
}

/** The environment variables that count; an empty value counts as unset. */
export type ProfileEnv = Record<string, string | undefined>;

/** `$XDG_CONFIG_HOME/keen/admin.json`, else `~/.config/keen/admin.json`. */
export function profilePath(env: ProfileEnv = process.env): string {
  const base =
    env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME)
      ? env.XDG_CONFIG_HOME
      : path.join(env.HOME || homedir(), '.config');
  return path.join(base, 'keen', 'admin.json');
}

const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);

/**
 * Reads the profile file; null when there is none. Like ssh with a private key,
 * a file that group or others may read is refused (`checkMode`): it holds admin
 * keys. `logout` passes `checkMode: false`, since removing a key is always safe.
 */
export function readProfiles(file: string, options: { checkMode?: boolean } = {}): ProfileFile | null {
  if (!existsSync(file)) return null;
  const mode = statSync(file).mode & 0o777;
  if ((options.checkMode ?? true) && (mode & 0o077) !== 0) {
    throw new CliError(
      `permissions ${mode.toString(8).padStart(4, '0')} for ${file} are too open: it holds admin API keys and must not be readable by others (run: chmod 600 ${file}, and consider rotating its keys)`,
      1,
      'PROFILE_TOO_OPEN',
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new CliError(
      `${file}: not valid JSON (${(err as Error).message}); fix it or delete it and run keen-admin login`,
      1,
      'INVALID_PROFILE',
    );
  }
  const problem = describeProblem(parsed);
  if (problem)
    throw new CliError(`${file}: ${problem}; fix it or delete it and run keen-admin login`, 1, 'INVALID_PROFILE');
  return parsed as ProfileFile;
}

function describeProblem(value: unknown): string | null {
  const isObject = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(value) || !isObject(value.profiles))
    return 'expected {"default": NAME, "profiles": {NAME: {"url", "api_key"}}}';
  if (value.default !== undefined && typeof value.default !== 'string') return '"default" must be a profile name';
  for (const [name, p] of Object.entries(value.profiles)) {
    if (!isObject(p) || typeof p.url !== 'string' || typeof p.api_key !== 'string')
      return `profile "${name}" needs "url" and "api_key" strings`;
  }
  return null;
}

/**
 * Writes the profile file atomically: a temporary file with mode 0600 in the
 * same directory, flushed, then renamed over the old one, so a crash never
 * leaves a half-written file and the keys are never readable by others, not
 * even for a moment. The directory is made (or reset to) 0700.
 */
export function writeProfiles(file: string, data: ProfileFile): void {
  const dir = path.dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, JSON.stringify(data, null, 2) + '\n');
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** Where a connection's URL came from, for messages: "--url", "KEEN_URL", "profile prod"... */
export function sourceName(conn: Pick<Connection, 'urlSource' | 'profile'>): string {
  switch (conn.urlSource) {
    case 'flag':
      return '--url';
    case 'env':
      return 'KEEN_URL';
    case 'daemon':
      return "the daemon's settings: KEEN_HOST/KEEN_PORT, --config or KEEN_CONFIG";
    case 'profile':
      return `profile "${conn.profile ?? ''}"`;
    default:
      return `the default, ${DEFAULT_URL}`;
  }
}

/** The connection flags given on the command line. */
export interface ConnectionFlags {
  url?: string | undefined;
  apiKey?: string | undefined;
  profile?: string | undefined;
}

/** Where each setting came from, for messages (never the key itself). `daemon`: the daemon's own settings (KEEN_HOST/KEEN_PORT, KEEN_CONFIG or --config). */
export type Source = 'flag' | 'env' | 'daemon' | 'profile' | 'default' | 'none';

/**
 * The address the daemon listens on, found the way the daemon finds it: its
 * config file (`--config`, else KEEN_CONFIG) with KEEN_HOST/KEEN_PORT over it
 * (loadConfig). A wildcard host (0.0.0.0, ::) is reached on loopback.
 * Undefined when none of them is set, or when the file does not load (then
 * KEEN_HOST/KEEN_PORT alone still count).
 */
export function daemonAddress(env: ProfileEnv, configFile?: string): string | undefined {
  const file = nonEmpty(configFile) ?? nonEmpty(env.KEEN_CONFIG);
  const host = nonEmpty(env.KEEN_HOST);
  const port = nonEmpty(env.KEEN_PORT);
  if (!file && !host && !port) return undefined;
  const urlOf = (h: string, p: string | number) => {
    const reach = h === '0.0.0.0' ? '127.0.0.1' : h === '::' || h === '[::]' ? '::1' : h;
    return `http://${reach.includes(':') && !reach.startsWith('[') ? `[${reach}]` : reach}:${p}`;
  };
  try {
    const config = loadConfig({ file, env: { KEEN_HOST: host, KEEN_PORT: port } });
    return urlOf(config.server.host, config.server.port);
  } catch {
    // A broken file is the command's to report (init, doctor); the variables alone still say where.
    if (!host && !port) return undefined;
    return urlOf(host ?? '127.0.0.1', port ?? new URL(DEFAULT_URL).port);
  }
}

/** A usable daemon URL (http or https), or a usage error naming where the bad value came from. */
export function checkUrl(url: string, origin: string): string {
  let u: URL | null = null;
  try {
    u = new URL(url);
  } catch {
    u = null;
  }
  if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:') || !u.host) {
    throw new CliError(
      `${origin}: "${url}" is not a daemon URL: expected http://HOST:PORT or https://HOST`,
      2,
      'INVALID_URL',
    );
  }
  return url;
}

/** The settings a command connects with. */
export interface Connection {
  url: string;
  apiKey: string | undefined;
  /** The profile whose values are used, if any. */
  profile: string | undefined;
  urlSource: Source;
  apiKeySource: Source;
}

/**
 * Resolves the connection settings, each one on its own, first match wins:
 * 1. flags: `--url`, `--api-key`, then the profile named by `--profile`;
 * 2. environment: `KEEN_URL`, `KEEN_API_KEY`, then the profile named by `KEEN_PROFILE`;
 * 3. the URL only: the daemon's own address (`daemon`: KEEN_HOST/KEEN_PORT, or
 *    server.host/port of `--config`/KEEN_CONFIG; see daemonAddress);
 * 4. the profile file's default profile;
 * 5. the built-in URL (there is no built-in key).
 * A profile named by `--profile` or `KEEN_PROFILE` must exist (usage error otherwise).
 * `file` is the parsed profile file (or null); `loadFile` is called only when a profile is needed.
 */
export function resolveConnection(
  flags: ConnectionFlags,
  env: ProfileEnv,
  loadFile: () => ProfileFile | null,
  fileName = 'the profile file',
  daemon: () => string | undefined = () => undefined,
): Connection {
  let file: ProfileFile | null | undefined;
  const profiles = () => (file === undefined ? (file = loadFile()) : file);
  const named = (name: string, origin: string): Profile => {
    const p = profiles()?.profiles[name];
    if (!p)
      throw new CliError(
        `no profile "${name}" (from ${origin}) in ${fileName}: run keen-admin login --profile ${name}`,
        2,
        'UNKNOWN_PROFILE',
      );
    return p;
  };

  const levels: Array<{
    source: Source;
    url?: string | undefined;
    apiKey?: string | undefined;
    profile?: string | undefined;
  }> = [];
  const flagProfile = nonEmpty(flags.profile);
  levels.push({ source: 'flag', url: nonEmpty(flags.url), apiKey: nonEmpty(flags.apiKey) });
  if (flagProfile) {
    const p = named(flagProfile, '--profile');
    levels.push({ source: 'flag', url: p.url, apiKey: p.api_key, profile: flagProfile });
  }
  levels.push({ source: 'env', url: nonEmpty(env.KEEN_URL), apiKey: nonEmpty(env.KEEN_API_KEY) });
  const envProfile = nonEmpty(env.KEEN_PROFILE);
  if (envProfile && !flagProfile) {
    const p = named(envProfile, 'KEEN_PROFILE');
    levels.push({ source: 'env', url: p.url, apiKey: p.api_key, profile: envProfile });
  }
  if (!levels.some((l) => l.url)) {
    const url = daemon();
    if (url) levels.push({ source: 'daemon', url });
  }
  const needMore = () => !levels.some((l) => l.url) || !levels.some((l) => l.apiKey);
  if (!flagProfile && !envProfile && needMore()) {
    const f = profiles();
    const name = f?.default;
    const p = name ? f?.profiles[name] : undefined;
    if (p) levels.push({ source: 'profile', url: p.url, apiKey: p.api_key, profile: name });
  }

  const urlLevel = levels.find((l) => l.url);
  const keyLevel = levels.find((l) => l.apiKey);
  if (urlLevel?.url) {
    const origin = urlLevel.profile
      ? `profile "${urlLevel.profile}"`
      : {
          flag: '--url',
          env: 'KEEN_URL',
          daemon: "the daemon's KEEN_HOST/KEEN_PORT/KEEN_CONFIG",
          profile: 'profile',
          default: 'default',
          none: '',
        }[urlLevel.source];
    checkUrl(urlLevel.url, origin);
  }
  return {
    url: urlLevel?.url ?? DEFAULT_URL,
    apiKey: keyLevel?.apiKey,
    profile: (keyLevel?.profile ?? urlLevel?.profile) || undefined,
    urlSource: urlLevel ? (urlLevel.profile ? 'profile' : urlLevel.source) : 'default',
    apiKeySource: keyLevel ? (keyLevel.profile ? 'profile' : keyLevel.source) : 'none',
  };
}
