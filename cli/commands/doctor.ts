import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { sql } from 'kysely';
import { loadConfig, type ResolvedConfig, secretList } from '../../daemon/cli-shared.js';
import {
  createLogger,
  type Database,
  databaseFromConfig,
  inspectMfaSecrets,
  loadRedis,
  MIN_SECRET_BYTES,
  pendingMigrations,
  Sandbox,
  UserRepository,
} from '../../daemon/operator.js';
import { connectionFor, globals } from '../core/context.js';
import { CliError } from '../core/output.js';
import { daemonAddress, DEFAULT_URL, shownUrl, sourceName } from '../core/profile.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

/** One line of the report. */
export interface Check {
  name: string;
  status: CheckStatus;
  message: string;
}

/** Every network step of a check gives up after this long. */
const TIMEOUT_MS = 3000;
/** Clocks further apart than this break token expiry, leases and audit order: warn. */
const MAX_SKEW_MS = 5000;

/** Rejects when `work` has not settled within `ms`. */
async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>(
        (_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)),
      ),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const messageOf = (err: unknown): string => {
  const e = err as NodeJS.ErrnoException;
  const text =
    e?.message ||
    (e instanceof AggregateError ? e.errors.map((x) => (x as Error).message).join('; ') : '') ||
    String(err);
  return e?.code && !text.includes(e.code) ? `${e.code}: ${text}` : text;
};

const octal = (mode: number) => (mode & 0o777).toString(8).padStart(4, '0');

/** The passwords of the configured URLs and the JWT secret: removed from every message, whatever a driver put in it. */
function secretsOf(config: ResolvedConfig | null, env: Record<string, string | undefined>): string[] {
  const out: string[] = [];
  for (const url of [config?.database.url, config?.redis.url, env.KEEN_DATABASE_URL, env.KEEN_REDIS_URL]) {
    if (!url) continue;
    try {
      const p = new URL(url).password;
      if (p) out.push(p, decodeURIComponent(p));
    } catch {
      // Not a URL: shownUrl handles the display.
    }
  }
  if (env.JWT_SECRET) out.push(env.JWT_SECRET);
  out.push(...secretList(env.JWT_PREVIOUS_SECRETS));
  return out.filter((s) => s.length >= 3);
}

/** One printable line: no control characters (a hostile value cannot rewrite the terminal), no secret. */
function clean(message: string, secrets: string[]): string {
  let m = message.replace(/\s*[\r\n]+\s*/g, ' ');
  for (const s of secrets) m = m.split(s).join('***');
  return m.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function checkDataDir(config: ResolvedConfig): Check {
  const dir = config.data_dir;
  if (!existsSync(dir))
    return {
      name: 'data_dir',
      status: 'warn',
      message: `${dir} does not exist yet; the daemon creates it (mode 0700) at start`,
    };
  const st = statSync(dir);
  if (!st.isDirectory()) return { name: 'data_dir', status: 'fail', message: `${dir} is not a directory` };
  // A real write: access(W_OK) says yes to root and no to nothing else (read-only mounts, full disks).
  const probe = path.join(dir, `.keen-doctor-${randomBytes(6).toString('hex')}`);
  try {
    writeFileSync(probe, '', { flag: 'wx', mode: 0o600 });
    rmSync(probe, { force: true });
  } catch (err) {
    return { name: 'data_dir', status: 'fail', message: `${dir} is not writable: ${messageOf(err)}` };
  }
  if ((st.mode & 0o077) !== 0) {
    return {
      name: 'data_dir',
      status: 'warn',
      message: `${dir} has mode ${octal(st.mode)}: others can reach the database and secrets in it (run: chmod 700 ${dir})`,
    };
  }
  return { name: 'data_dir', status: 'ok', message: `${dir} (mode ${octal(st.mode)}, writable)` };
}

/** Database reachable, schema migrated, and its clock (measured from the middle of the round trip); the MFA secrets when it is migrated. */
async function checkDatabase(
  config: ResolvedConfig,
): Promise<{ checks: Check[]; skewMs: number | null; mfa: Check | null }> {
  const url = config.database.url;
  const shown = shownUrl(url);
  if (url.startsWith('sqlite:')) {
    const file = url.slice('sqlite:'.length);
    if (file !== ':memory:' && !existsSync(file)) {
      // Opening it would create it: doctor only looks.
      return {
        checks: [
          {
            name: 'database',
            status: 'warn',
            message: `${shown} does not exist yet; the daemon creates it at start (or run keen-gateway migrate)`,
          },
        ],
        skewMs: null,
        mfa: null,
      };
    }
  }
  const database = databaseFromConfig(config, {
    poolMax: 1,
    connectTimeoutMs: Math.min(config.database.connect_timeout_ms, TIMEOUT_MS),
    busyTimeoutMs: Math.min(config.database.busy_timeout_ms, TIMEOUT_MS),
    logger: createLogger('silent'),
  });
  const checks: Check[] = [];
  let skewMs: number | null = null;
  let mfa: Check | null = null;
  try {
    try {
      await withTimeout(database.ping(TIMEOUT_MS), TIMEOUT_MS + 500, 'database');
    } catch (err) {
      checks.push({ name: 'database', status: 'fail', message: `cannot reach ${shown}: ${messageOf(err)}` });
      return { checks, skewMs, mfa };
    }
    checks.push({ name: 'database', status: 'ok', message: `${shown} (${database.dialect}) answers` });
    try {
      const pending = await withTimeout(pendingMigrations(database), TIMEOUT_MS, 'migrations');
      checks.push(
        pending.length === 0
          ? { name: 'migrations', status: 'ok', message: 'schema up to date' }
          : {
              name: 'migrations',
              status: 'warn',
              message: `${pending.length} pending: ${pending.join(', ')} (run keen-gateway migrate, or start the daemon)`,
            },
      );
      if (pending.length === 0) mfa = await checkMfaSecrets(config, database);
    } catch (err) {
      checks.push({
        name: 'migrations',
        status: 'fail',
        message: `cannot read the migration state: ${messageOf(err)}`,
      });
    }
    try {
      const before = Date.now();
      const query =
        database.dialect === 'postgres'
          ? sql<{ now: Date | string }>`select now() as now`
          : sql<{ now: string }>`select datetime('now') as now`;
      const r = await withTimeout(query.execute(database.db), TIMEOUT_MS, 'database clock');
      const after = Date.now();
      const raw = r.rows[0]?.now;
      // SQLite's datetime('now') is UTC without a zone: 'YYYY-MM-DD HH:MM:SS'.
      const serverMs =
        raw instanceof Date
          ? raw.getTime()
          : Date.parse(String(raw).replace(' ', 'T') + (database.dialect === 'sqlite' ? 'Z' : ''));
      if (Number.isFinite(serverMs)) skewMs = serverMs - (before + after) / 2;
    } catch {
      skewMs = null;
    }
  } finally {
    await withTimeout(database.close(), TIMEOUT_MS, 'close').catch(() => undefined);
  }
  return { checks, skewMs, mfa };
}

/**
 * The secret the daemon signs and seals with, as it would resolve it, without
 * its side effects: JWT_SECRET, else the generated <data_dir>/jwt-secret; null
 * when there is neither (the daemon would generate a new one).
 */
function currentJwtSecret(config: ResolvedConfig): Buffer | null {
  if (config.jwt_secret !== null) return Buffer.from(config.jwt_secret, 'utf8');
  const file = path.join(config.data_dir, 'jwt-secret');
  if (!existsSync(file)) return null;
  const secret = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64url');
  return secret.length >= MIN_SECRET_BYTES ? secret : null;
}

/**
 * Every user's sealed TOTP secret must open with JWT_SECRET or a JWT_PREVIOUS_SECRETS
 * entry: one that does not (the secret changed without the old one kept) makes that
 * user's TOTP sign-ins answer MFA_UNAVAILABLE until an administrator resets their MFA.
 */
async function checkMfaSecrets(config: ResolvedConfig, database: Database): Promise<Check> {
  const name = 'mfa_secrets';
  let report;
  try {
    const current = currentJwtSecret(config);
    // No secret at all: the daemon would generate a new one, under which nothing opens.
    report = await withTimeout(
      inspectMfaSecrets(
        new UserRepository(database.db),
        current ?? randomBytes(48),
        config.jwt_previous_secrets.map((s) => Buffer.from(s, 'utf8')),
      ),
      TIMEOUT_MS,
      'MFA secrets',
    );
  } catch (err) {
    return { name, status: 'warn', message: `cannot read the users' MFA secrets: ${messageOf(err)}` };
  }
  const n = report.unreadable.length;
  if (n > 0) {
    const shown = report.unreadable.slice(0, 10).join(', ') + (n > 10 ? ` and ${n - 10} more` : '');
    return {
      name,
      status: 'warn',
      message:
        `${n} user${n === 1 ? "'s MFA secret opens" : "s' MFA secrets open"} with neither JWT_SECRET nor JWT_PREVIOUS_SECRETS (the secret changed without the old one kept): ` +
        `their TOTP sign-ins answer 409 MFA_UNAVAILABLE. Put the old secret in JWT_PREVIOUS_SECRETS, or run keen-admin users reset-mfa <user> for: ${shown}`,
    };
  }
  if (report.sealed === 0) return { name, status: 'ok', message: 'no user has an MFA secret' };
  const moved =
    report.previous > 0
      ? `; ${report.previous} only with JWT_PREVIOUS_SECRETS (the daemon moves them to JWT_SECRET at its next start)`
      : '';
  return {
    name,
    status: 'ok',
    message: `${report.sealed} MFA secret${report.sealed === 1 ? '' : 's'} open with the configured secrets${moved}`,
  };
}

async function checkRedis(config: ResolvedConfig): Promise<Check> {
  const url = config.redis.url;
  if (!url)
    return {
      name: 'redis',
      status: 'ok',
      message: 'not configured (limits and the event bus are in-process: run one daemon only)',
    };
  const shown = shownUrl(url);
  let lastError: string | null = null;
  // Loaded here: ioredis would add to the start-up time of every other command.
  const { createRedis } = await loadRedis();
  const client = createRedis(
    url,
    {
      warn: (obj) => (lastError = (obj as { err?: { message?: string } }).err?.message ?? lastError),
      info: () => undefined,
    },
    { connectionName: 'keen-doctor', connectTimeoutMs: TIMEOUT_MS, commandTimeoutMs: TIMEOUT_MS },
  );
  try {
    await withTimeout(new Promise<void>((resolve) => client.once('ready', () => resolve())), TIMEOUT_MS, 'redis').catch(
      (err: Error) => {
        throw new Error(lastError ?? err.message);
      },
    );
    const pong = await withTimeout(client.ping(), TIMEOUT_MS, 'redis PING');
    return { name: 'redis', status: 'ok', message: `${shown} answers PING (${pong})` };
  } catch (err) {
    return { name: 'redis', status: 'fail', message: `cannot reach ${shown}: ${messageOf(err)}` };
  } finally {
    client.disconnect();
  }
}

const isExecutable = (file: string): boolean => {
  try {
    if (!statSync(file).isFile()) return false;
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

/** The agent's program runs (on PATH or as a path), and its arguments that are paths exist. */
function checkAgent(config: ResolvedConfig, env: Record<string, string | undefined>): Check {
  const [program, ...args] = config.agent.command;
  if (!program) return { name: 'agent', status: 'fail', message: 'agent.command: is empty' };
  let found: string | null = null;
  if (program.includes('/')) {
    const file = path.resolve(config.config_dir, program);
    if (!existsSync(file)) return { name: 'agent', status: 'fail', message: `agent.command: ${file} does not exist` };
    if (!isExecutable(file))
      return { name: 'agent', status: 'fail', message: `agent.command: ${file} is not an executable file` };
    found = file;
  } else {
    // The runner gives the agent the daemon's PATH.
    const dirs = (config.agent_env.PATH ?? env.PATH ?? '').split(path.delimiter).filter(Boolean);
    found = dirs.map((d) => path.join(d, program)).find(isExecutable) ?? null;
    if (!found)
      return { name: 'agent', status: 'fail', message: `agent.command: program "${program}" is not found on PATH` };
  }
  const missing = args
    .filter((a) => !a.startsWith('-') && (path.isAbsolute(a) || a.startsWith('./') || a.startsWith('../')))
    .map((a) => path.resolve(config.config_dir, a))
    .filter((a) => !existsSync(a));
  if (missing.length > 0)
    return { name: 'agent', status: 'fail', message: `agent.command: ${missing.join(', ')} does not exist` };
  return { name: 'agent', status: 'ok', message: `${found}${args.length ? ` ${args.join(' ')}` : ''}` };
}

/**
 * The agent sandbox: runs the daemon's own start-up probe (a trivial command in a
 * sandbox built exactly like an agent's). Fails when bubblewrap does not work, since
 * the daemon then refuses to start in production and runs agents unconfined elsewhere.
 */
async function checkSandbox(config: ResolvedConfig): Promise<Check> {
  const { mode, network } = config.agent.sandbox;
  if (mode === 'none')
    return {
      name: 'sandbox',
      status: 'warn',
      message: "agent.sandbox.mode is none: agents run unconfined and can read the gateway's secrets",
    };
  // The generated files go to a folder of doctor's own, so it writes nothing beside a running daemon.
  const runtimeDir = mkdtempSync(path.join(tmpdir(), 'keen-doctor-'));
  try {
    const sandbox = new Sandbox({
      settings: config.agent.sandbox,
      limits: config.agent.limits,
      command: config.agent.command,
      runtimeDir,
      logger: createLogger('silent'),
      hostPath: config.agent_env.PATH,
    });
    const probe = await sandbox.probe();
    if (!probe.ok) return { name: 'sandbox', status: 'fail', message: probe.detail };
    if (network === 'host')
      return {
        name: 'sandbox',
        status: 'warn',
        message: `${probe.detail}; network host: agents reach every address the daemon can`,
      };
    return { name: 'sandbox', status: 'ok', message: probe.detail };
  } finally {
    rmSync(runtimeDir, { recursive: true, force: true });
  }
}

/**
 * JWT_SECRET strength (config.example.yaml): production refuses a missing or short one, so doctor
 * fails there. JWT_PREVIOUS_SECRETS is held to the same rule, and named while it is set: it is
 * meant to be removed once a rotation's overlap is over.
 */
function checkJwtSecret(config: ResolvedConfig): Check {
  const production = config.env === 'production';
  const weak: CheckStatus = production ? 'fail' : 'warn';
  const tooShort = (name: string, bytes: number): Check => ({
    name: 'jwt_secret',
    status: weak,
    message: `${name} is ${bytes} bytes; at least ${MIN_SECRET_BYTES} are required${production ? ' in production' : ' (refused in production)'}`,
  });
  const previous = config.jwt_previous_secrets;
  const short = previous.findIndex((s) => Buffer.byteLength(s, 'utf8') < MIN_SECRET_BYTES);
  if (short >= 0)
    return tooShort(`JWT_PREVIOUS_SECRETS entry ${short + 1}`, Buffer.byteLength(previous[short]!, 'utf8'));
  const overlap =
    previous.length > 0
      ? `; ${previous.length} previous secret${previous.length === 1 ? '' : 's'} still accepted (JWT_PREVIOUS_SECRETS): remove once the rotation's overlap is over`
      : '';
  if (config.jwt_secret !== null) {
    const bytes = Buffer.byteLength(config.jwt_secret, 'utf8');
    if (bytes >= MIN_SECRET_BYTES)
      return { name: 'jwt_secret', status: 'ok', message: `JWT_SECRET is set (${bytes} bytes)${overlap}` };
    return tooShort('JWT_SECRET', bytes);
  }
  const file = path.join(config.data_dir, 'jwt-secret');
  if (production)
    return {
      name: 'jwt_secret',
      status: 'fail',
      message: 'JWT_SECRET is not set; it is required when KEEN_ENV=production',
    };
  if (!existsSync(file))
    return {
      name: 'jwt_secret',
      status: 'warn',
      message: `JWT_SECRET is not set; the daemon will generate one into ${file} (set JWT_SECRET in production)`,
    };
  const mode = statSync(file).mode;
  const length = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64url').length;
  if (length < MIN_SECRET_BYTES)
    return {
      name: 'jwt_secret',
      status: 'fail',
      message: `${file} holds a secret shorter than ${MIN_SECRET_BYTES} bytes; delete it to generate a new one`,
    };
  if ((mode & 0o077) !== 0)
    return {
      name: 'jwt_secret',
      status: 'warn',
      message: `JWT_SECRET is not set, and ${file} has mode ${octal(mode)} (the daemon resets it to 0600; set JWT_SECRET in production)`,
    };
  return {
    name: 'jwt_secret',
    status: 'warn',
    message: `JWT_SECRET is not set; using the generated ${file} (mode 0600; set JWT_SECRET in production)`,
  };
}

/** What the daemon at `url` said on /health/live: whether it answered, its clock from the Date header (whole seconds), its version. */
interface DaemonProbe {
  answered: boolean;
  skewMs: number | null;
  version: string | null;
  error: string | null;
}

async function probeDaemon(url: string): Promise<DaemonProbe> {
  try {
    const before = Date.now();
    const res = await fetch(`${url.replace(/\/+$/, '')}/health/live`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    const after = Date.now();
    const body = (await res.json().catch(() => null)) as { version?: unknown } | null;
    const version = typeof body?.version === 'string' ? body.version : null;
    if (!res.ok) return { answered: false, skewMs: null, version, error: `GET /health/live answered ${res.status}` };
    const date = Date.parse(res.headers.get('date') ?? '');
    // The header has whole seconds, truncated: compare with the middle of that second.
    return {
      answered: true,
      skewMs: Number.isFinite(date) ? date + 500 - (before + after) / 2 : null,
      version,
      error: null,
    };
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    return { answered: false, skewMs: null, version: null, error: messageOf(cause ?? err) };
  }
}

/** The daemon answers at the address keen-admin resolved: a daemon that does not is a failure (`--no-daemon` skips it, e.g. before the first start). */
function checkDaemon(daemon: { url: string; source: string; probe: DaemonProbe }): Check {
  const where = `${shownUrl(daemon.url)} (from ${daemon.source})`;
  if (daemon.probe.answered)
    return {
      name: 'daemon',
      status: 'ok',
      message: `${where} answers${daemon.probe.version ? ` (version ${daemon.probe.version})` : ''}`,
    };
  return {
    name: 'daemon',
    status: 'fail',
    message: `no daemon answers at ${where}: ${daemon.probe.error ?? 'no answer'}; start it, or point keen-admin at it with --url or KEEN_URL (or --no-daemon to check only the local setup)`,
  };
}

function checkClock(databaseSkew: number | null, daemon: { url: string; skewMs: number | null } | null): Check {
  const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const parts: string[] = [];
  let status = 'ok' as CheckStatus;
  const compare = (what: string, skew: number, resolution: number) => {
    const off = Math.abs(skew) > MAX_SKEW_MS + resolution;
    if (off) status = 'warn';
    parts.push(
      `${what} is ${off ? `${seconds(Math.abs(skew))} ${skew > 0 ? 'ahead of' : 'behind'}` : `within ${seconds(Math.max(Math.abs(skew), 0))} of`} this machine`,
    );
  };
  if (databaseSkew !== null) compare('the database clock', databaseSkew, 0);
  else parts.push('the database clock was not read');
  if (daemon === null) parts.push('the daemon was not asked (--no-daemon)');
  else if (daemon.skewMs !== null) compare(`the daemon at ${shownUrl(daemon.url)}`, daemon.skewMs, 500);
  else parts.push(`the daemon at ${shownUrl(daemon.url)} did not answer (not compared)`);
  return {
    name: 'clock',
    status,
    message:
      parts.join('; ') +
      (status === 'warn' ? ` (more than ${MAX_SKEW_MS / 1000} s breaks token expiry and leases: sync with NTP)` : ''),
  };
}

/**
 * Runs every check, in order; a config that does not load stops the rest.
 * `daemonUrl` null skips the daemon (`--no-daemon`); `daemonSource` says where the URL came from.
 */
export async function runChecks(options: {
  file?: string | undefined;
  env: Record<string, string | undefined>;
  daemonUrl: string | null;
  daemonSource?: string;
}): Promise<Check[]> {
  let config: ResolvedConfig;
  try {
    config = loadConfig({ file: options.file, env: options.env });
  } catch (err) {
    return [{ name: 'config', status: 'fail', message: clean(messageOf(err), secretsOf(null, options.env)) }];
  }
  const source = options.file ?? options.env.KEEN_CONFIG;
  const checks: Check[] = [
    {
      name: 'config',
      status: 'ok',
      message: `${source ? path.resolve(source) : 'no file: defaults and environment'} (env ${config.env})`,
    },
  ];
  checks.push(checkDataDir(config));
  const daemonUrl = options.daemonUrl;
  const [db, redis, daemon, sandbox] = await Promise.all([
    checkDatabase(config),
    checkRedis(config),
    daemonUrl === null ? null : probeDaemon(daemonUrl),
    checkSandbox(config),
  ]);
  checks.push(
    ...db.checks,
    redis,
    checkAgent(config, options.env),
    sandbox,
    checkJwtSecret(config),
    ...(db.mfa ? [db.mfa] : []),
  );
  if (daemonUrl !== null && daemon)
    checks.push(checkDaemon({ url: daemonUrl, source: options.daemonSource ?? 'the command line', probe: daemon }));
  checks.push(checkClock(db.skewMs, daemonUrl !== null && daemon ? { url: daemonUrl, skewMs: daemon.skewMs } : null));
  const secrets = secretsOf(config, options.env);
  return checks.map((c) => ({ ...c, message: clean(c.message, secrets) }));
}

/** `keen-admin doctor`: checks what the daemon needs, with its own config and environment, one line each. */
export function doctorCommand(): Command {
  return new Command('doctor')
    .description(
      "check the daemon's config, data directory, database, Redis, agent, sandbox, JWT secret, MFA secrets and clocks",
    )
    .option(
      '-c, --config <file>',
      "the daemon's YAML config (default: $KEEN_CONFIG); its server.host/port say where the daemon is, unless --url or KEEN_URL",
    )
    .option('--no-daemon', 'do not ask the running daemon (before its first start): no daemon check, no daemon clock')
    .addHelpText(
      'after',
      '\nRun it where the daemon runs, with the same environment. Each line is ok, warn or fail;\nthe exit code is 1 when any check fails (warnings do not fail), including a daemon\n' +
        'that does not answer at the resolved address (see keen-admin --help for the order).\n' +
        '\nExample:\n  KEEN_ENV=production keen-admin doctor --config /etc/keen/gateway.yaml\n  keen-admin doctor --json | jq \'.checks[] | select(.status != "ok")\'',
    )
    .action(async (opts: { config?: string; daemon: boolean }, cmd: Command) => {
      const g = globals(cmd);
      let daemonUrl: string | null = null;
      let daemonSource: string | undefined;
      if (opts.daemon) {
        try {
          const conn = connectionFor(cmd);
          daemonUrl = conn.url;
          daemonSource = sourceName(conn);
        } catch (err) {
          if (err instanceof CliError && err.code === 'INVALID_URL') throw err;
          // A broken profile file is no reason to skip the local checks.
          daemonUrl = process.env.KEEN_URL || daemonAddress(process.env, opts.config) || DEFAULT_URL;
          daemonSource = process.env.KEEN_URL
            ? 'KEEN_URL'
            : "the daemon's settings or the default (the profile file did not load)";
        }
      }
      const checks = await runChecks({
        file: opts.config,
        env: process.env,
        daemonUrl,
        ...(daemonSource ? { daemonSource } : {}),
      });
      const failed = checks.filter((c) => c.status === 'fail').length;
      if (g.json) process.stdout.write(JSON.stringify({ ok: failed === 0, checks }) + '\n');
      else {
        const width = Math.max(...checks.map((c) => c.name.length));
        for (const c of checks) process.stdout.write(`${c.status.padEnd(4)}  ${c.name.padEnd(width)}  ${c.message}\n`);
      }
      if (failed > 0) throw new CliError(`${failed} check${failed === 1 ? '' : 's'} failed`, 1, 'CHECK_FAILED');
    });
}
