import { existsSync, readFileSync } from 'node:fs';
import { IANAZone } from 'luxon';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { GatewayConfig } from '../../schemas/types.gen.js';
import { PROJECT_ROOT } from '../paths.js';
import { createAjv, describeAjvErrors } from '../schemas.js';
import { ConfigError } from './errors.js';

/**
 * The configuration after defaults, environment overrides and path resolution.
 * Every optional value of the schema has been given its real default here, so the
 * rest of the daemon never repeats a fallback.
 */
export interface ResolvedConfig extends GatewayConfig {
  env: 'development' | 'production' | 'test';
  /** `public_url_auto`: no public URL was configured, so it follows the address actually listened on. */
  server: GatewayConfig['server'] & { public_url: string; public_url_auto: boolean };
  database: GatewayConfig['database'] & { url: string };
  redis: { url: string | null; key_prefix: string };
  workspaces: GatewayConfig['workspaces'] & { root: string };
  audit: GatewayConfig['audit'] & { archive_dir: string };
  /** Folder of the config file (or the working directory): relative paths resolve from here. */
  config_dir: string;
  /** From the JWT_SECRET variable; never in the file, never logged. */
  jwt_secret: string | null;
  /**
   * From JWT_PREVIOUS_SECRETS (separated by commas or white space): secrets
   * rotated out that are still accepted for verifying and decrypting, never used
   * to sign. Never in the file, never logged.
   */
  jwt_previous_secrets: string[];
  /** What agents may inherit from the daemon's environment: PATH, LANG and the `agent.env_passthrough` names. */
  agent_env: Record<string, string>;
}

export interface LoadConfigOptions {
  /** Path of the YAML file (`--config`); falls back to `KEEN_CONFIG`. */
  file?: string | undefined;
  /** The environment to read overrides from (the caller passes process.env). */
  env: Record<string, string | undefined>;
  cwd?: string;
  /** Test-only: deep-merged over the file before validation. */
  overrides?: Record<string, unknown>;
}

/** Environment variables and the key each overrides (config.example.yaml). */
const ENV_KEYS: Array<[string, string[]]> = [
  ['KEEN_HOST', ['server', 'host']],
  ['KEEN_PORT', ['server', 'port']],
  ['KEEN_PUBLIC_URL', ['server', 'public_url']],
  ['KEEN_DATA_DIR', ['data_dir']],
  ['KEEN_DATABASE_URL', ['database', 'url']],
  ['KEEN_REDIS_URL', ['redis', 'url']],
  ['KEEN_LOG_LEVEL', ['log', 'level']],
  ['KEEN_ENV', ['env']],
];

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function deepMerge(target: Record<string, unknown>, source: Record<string, unknown>): Record<string, unknown> {
  for (const [k, v] of Object.entries(source)) {
    const current = target[k];
    if (isPlainObject(v) && isPlainObject(current)) deepMerge(current, v);
    else target[k] = isPlainObject(v) ? deepMerge({}, v) : v;
  }
  return target;
}

function setPath(obj: Record<string, unknown>, keys: string[], value: unknown): void {
  let node = obj;
  for (const k of keys.slice(0, -1)) {
    if (!isPlainObject(node[k])) node[k] = {};
    node = node[k] as Record<string, unknown>;
  }
  node[keys[keys.length - 1]!] = value;
}

/** Numbers from the environment arrive as strings; a non-numeric one is left for the schema to refuse. */
function envValue(raw: string): unknown {
  return /^-?\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw;
}

const validateConfig = (() => {
  let fn: ReturnType<ReturnType<typeof createAjv>['getSchema']> | undefined;
  return (value: unknown) => {
    fn ??= createAjv({ useDefaults: true }).getSchema('https://keen.invalid/schemas/config.schema.json');
    if (!fn) throw new Error('config schema missing');
    return { ok: fn(value) as boolean, errors: fn.errors };
  };
})();

/** Reads, merges, validates and resolves the configuration. Throws ConfigError naming each bad key. */
export function loadConfig(options: LoadConfigOptions): ResolvedConfig {
  const cwd = options.cwd ?? process.cwd();
  const env = options.env;
  const file = options.file ?? env.KEEN_CONFIG;
  let raw: Record<string, unknown> = {};
  let configDir = cwd;
  if (file) {
    const abs = path.resolve(cwd, file);
    if (!existsSync(abs)) throw new ConfigError([`config file not found: ${abs}`]);
    let parsed: unknown;
    try {
      parsed = parseYaml(readFileSync(abs, 'utf8'));
    } catch (err) {
      throw new ConfigError([`${abs}: not valid YAML: ${(err as Error).message.split('\n')[0]}`]);
    }
    if (parsed !== null && parsed !== undefined && !isPlainObject(parsed)) {
      throw new ConfigError([`${abs}: the top level must be a mapping of keys`]);
    }
    raw = (parsed as Record<string, unknown> | null) ?? {};
    configDir = path.dirname(abs);
  }
  if (options.overrides) deepMerge(raw, structuredClone(options.overrides));
  for (const [name, keys] of ENV_KEYS) {
    const v = env[name];
    if (v !== undefined && v !== '') setPath(raw, keys, envValue(v));
  }
  // Before the schema fills in defaults: the built-in agent.command belongs to this package, not to the config folder.
  const commandGiven = isPlainObject(raw.agent) && raw.agent.command !== undefined;
  // Only the env carries the secret; a key of that name in the file is refused by the schema.
  const { ok, errors } = validateConfig(raw);
  if (!ok) throw new ConfigError(describeAjvErrors(errors));
  const cfg = raw as unknown as GatewayConfig;

  const dataDir = path.resolve(configDir, cfg.data_dir);
  const dbUrl = cfg.database.url ?? `sqlite:${path.join(dataDir, 'keen.db')}`;
  if (!/^(sqlite:|postgres(ql)?:\/\/)/.test(dbUrl)) {
    throw new ConfigError(['database.url: must start with sqlite: or postgres://']);
  }
  const redisUrl = cfg.redis.url ?? null;
  if (redisUrl && !/^rediss?:\/\//.test(redisUrl)) {
    throw new ConfigError(['redis.url: must start with redis:// or rediss://']);
  }
  if (!IANAZone.isValidZone(cfg.credits.budget_time_zone)) {
    throw new ConfigError([
      `credits.budget_time_zone: "${cfg.credits.budget_time_zone}" is not an IANA time zone (e.g. UTC, Europe/Berlin)`,
    ]);
  }
  if (cfg.server.headers_timeout_ms > cfg.server.request_timeout_ms) {
    throw new ConfigError(['server.headers_timeout_ms: must not be longer than server.request_timeout_ms']);
  }
  const host = cfg.server.host;
  const publicUrl = (
    cfg.server.public_url ?? `http://${host.includes(':') ? `[${host}]` : host}:${cfg.server.port}`
  ).replace(/\/+$/, '');
  // A command from the file resolves from the config folder; the built-in default (examples/agent/agent.js) from the package.
  const commandBase = commandGiven ? configDir : PROJECT_ROOT;
  const command = cfg.agent.command.map((part, i) =>
    // The program itself may be a bare name found on PATH; arguments that look like relative paths resolve from commandBase.
    (i > 0 || part.includes('/')) && !path.isAbsolute(part) && /^\.{0,2}[\w.-]*\//.test(part)
      ? path.resolve(commandBase, part)
      : part,
  ) as GatewayConfig['agent']['command'];

  return {
    ...cfg,
    env: cfg.env ?? 'development',
    data_dir: dataDir,
    server: { ...cfg.server, public_url: publicUrl, public_url_auto: !cfg.server.public_url },
    database: { ...cfg.database, url: sqliteUrlAbsolute(dbUrl, configDir) },
    redis: { url: redisUrl, key_prefix: cfg.redis.key_prefix },
    agent: { ...cfg.agent, command },
    workspaces: {
      ...cfg.workspaces,
      root: path.resolve(configDir, cfg.workspaces.root ?? path.join(dataDir, 'workspaces')),
    },
    audit: { ...cfg.audit, archive_dir: path.resolve(configDir, cfg.audit.archive_dir ?? path.join(dataDir, 'audit')) },
    config_dir: configDir,
    jwt_secret: env.JWT_SECRET && env.JWT_SECRET.length > 0 ? env.JWT_SECRET : null,
    jwt_previous_secrets: secretList(env.JWT_PREVIOUS_SECRETS),
    agent_env: Object.fromEntries(
      ['PATH', 'LANG', ...cfg.agent.env_passthrough].flatMap((name) =>
        env[name] !== undefined ? [[name, env[name]!]] : [],
      ),
    ),
  };
}

/** The entries of a variable holding several secrets, separated by commas or white space. */
export function secretList(value: string | undefined): string[] {
  return (value ?? '').split(/[\s,]+/).filter((s) => s.length > 0);
}

function sqliteUrlAbsolute(url: string, base: string): string {
  if (!url.startsWith('sqlite:')) return url;
  const p = url.slice('sqlite:'.length);
  return p === ':memory:' ? url : `sqlite:${path.resolve(base, p)}`;
}

/** A URL with its password removed, for logs and error messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
  }
}
