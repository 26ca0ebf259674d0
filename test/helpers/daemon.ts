import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { stringify as toYaml } from 'yaml';
import type { Clock } from '../../daemon/clock.js';
import { loadConfig, type ResolvedConfig } from '../../daemon/config/load.js';
import { Container } from '../../daemon/container.js';
import type { AuditLogger } from '../../daemon/audit/types.js';
import { createLogger } from '../../daemon/logger.js';
import { PROJECT_ROOT } from '../../daemon/paths.js';
import { listen, type RunningServer } from '../../daemon/server.js';
import type { SharedBackend, StorageBackend } from './backends.js';
import { TEST_REDIS_URL } from './env.js';
import { Api } from './http.js';
import { createTestSchema, type TestSchema } from './postgres.js';

export interface DaemonOptions {
  backend?: StorageBackend;
  shared?: SharedBackend;
  /** Deep-merged over the defaults (YAML keys). */
  config?: Record<string, unknown>;
  /** Reuse another daemon's database (several daemons on one store). */
  databaseUrl?: string;
  jwtSecret?: string;
  /** JWT_PREVIOUS_SECRETS: rotated-out secrets still accepted. */
  previousJwtSecrets?: string[];
  /** PATH of the in-process daemon (the agent's, and where bwrap is looked up); default this process's. */
  path?: string;
  clock?: Clock;
  logLevel?: string;
  /** Replaces the durable audit store (benchmarks comparing its cost). */
  audit?: AuditLogger;
  /** prom-client's default process and Node.js metrics on /metrics; off by default (they cost a little per daemon). */
  defaultMetrics?: boolean;
}

/** Where a test daemon keeps its files and which database it uses. */
export interface DaemonHome {
  dataDir: string;
  databaseUrl: string;
  jwtSecret: string;
  schema: TestSchema | null;
  cleanup(): Promise<void>;
}

export async function makeHome(options: DaemonOptions): Promise<DaemonHome> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'keen-test-'));
  let schema: TestSchema | null = null;
  let databaseUrl = options.databaseUrl;
  if (!databaseUrl) {
    if ((options.backend ?? 'sqlite') === 'postgres') {
      schema = await createTestSchema();
      databaseUrl = schema.url;
    } else {
      databaseUrl = `sqlite:${path.join(dataDir, 'keen.db')}`;
    }
  }
  return {
    dataDir,
    databaseUrl,
    jwtSecret: options.jwtSecret ?? randomBytes(32).toString('base64url'),
    schema,
    async cleanup() {
      await schema?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

function baseConfig(home: DaemonHome, options: DaemonOptions): Record<string, unknown> {
  const shared = options.shared ?? 'memory';
  if (shared === 'redis' && !TEST_REDIS_URL) throw new Error('KEEN_TEST_REDIS_URL is not set');
  return deepMerge(
    {
      env: 'test',
      data_dir: home.dataDir,
      server: { host: '127.0.0.1', port: 0, shutdown_timeout_seconds: 2 },
      database: { url: home.databaseUrl },
      // A prefix per daemon home: Redis outlives test runs, and suites must not see each other's counters.
      redis: {
        url: shared === 'redis' ? TEST_REDIS_URL : null,
        key_prefix: `keen-test:${path.basename(home.dataDir)}:`,
      },
      log: { level: options.logLevel ?? 'info' },
      agent: { command: ['node', path.join(PROJECT_ROOT, 'examples/agent/agent.js')] },
      webhooks: { allow_private_targets: true },
    },
    options.config ?? {},
  );
}

/** A daemon running in this process on an ephemeral loopback port. */
export interface TestDaemon {
  url: string;
  api: Api;
  container: Container;
  config: ResolvedConfig;
  home: DaemonHome;
  /** Every log line the daemon wrote, as text. */
  logs: string[];
  server: RunningServer;
  stop(): Promise<void>;
}

export async function startDaemon(options: DaemonOptions = {}): Promise<TestDaemon> {
  const home = await makeHome(options);
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  const env = {
    JWT_SECRET: home.jwtSecret,
    PATH: options.path ?? process.env.PATH,
    LANG: process.env.LANG,
    ...(options.previousJwtSecrets ? { JWT_PREVIOUS_SECRETS: options.previousJwtSecrets.join(',') } : {}),
  };
  const config = loadConfig({ env, overrides: baseConfig(home, options) });
  const logger = createLogger(config.log.level, sink);
  const container = new Container({
    config,
    logger,
    clock: options.clock,
    defaultMetrics: options.defaultMetrics ?? false,
    ...(options.audit ? { audit: options.audit } : {}),
  });
  try {
    await container.start();
  } catch (err) {
    await container.stop();
    await home.cleanup();
    throw err;
  }
  const server = await listen(container, { port: 0 });
  let stopped = false;
  return {
    url: server.url,
    api: new Api(server.url),
    container,
    config,
    home,
    logs,
    server,
    async stop() {
      if (stopped) return;
      stopped = true;
      await server.close();
      if (!options.databaseUrl) await home.cleanup();
      else rmSync(home.dataDir, { recursive: true, force: true });
    },
  };
}

/** A daemon as a child process (`keen-gateway start`), for end-to-end tests: signals, crashes, exit codes. */
export interface ChildDaemon {
  url: string;
  port: number;
  api: Api;
  child: ChildProcess;
  home: DaemonHome;
  stdout: string[];
  stderr: string[];
  /** Resolves with the exit code once the process has ended. */
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
  cleanup(): Promise<void>;
}

/**
 * Child processes run the built executables (`npm run build` makes dist/, as `npm ci`
 * does), exactly what users run; source maps bring their coverage back to the sources.
 */
export const NODE_ARGS = ['--enable-source-maps'];
export const MAIN = path.join(PROJECT_ROOT, 'dist/daemon/main.js');
export const ADMIN = path.join(PROJECT_ROOT, 'dist/cli/keen-admin.js');

export async function spawnDaemon(
  options: DaemonOptions & { env?: Record<string, string>; home?: DaemonHome } = {},
): Promise<ChildDaemon> {
  const home = options.home ?? (await makeHome(options));
  const configFile = path.join(home.dataDir, 'gateway.yaml');
  writeFileSync(configFile, toYaml(baseConfig(home, options)));
  const child = spawn(process.execPath, [...NODE_ARGS, MAIN, 'start', '--config', configFile], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, JWT_SECRET: home.jwtSecret, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(
      () => reject(new Error(`daemon did not start in time:\n${stderr.join('')}\n${stdout.join('')}`)),
      30_000,
    );
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout.push(String(chunk));
      buf += String(chunk);
      const m = /"port":(\d+)[^\n]*"msg":"listening"/.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => stderr.push(String(chunk)));
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited with ${code} before listening:\n${stderr.join('')}`));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    port,
    api: new Api(url),
    child,
    home,
    stdout,
    stderr,
    exited,
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
    async cleanup() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      if (!options.home) await home.cleanup();
    },
  };
}

export function deepMerge(target: Record<string, unknown>, source: Record<string, unknown>): Record<string, unknown> {
  for (const [k, v] of Object.entries(source)) {
    const cur = target[k];
    if (v && typeof v === 'object' && !Array.isArray(v) && cur && typeof cur === 'object' && !Array.isArray(cur)) {
      deepMerge(cur as Record<string, unknown>, v as Record<string, unknown>);
    } else target[k] = v;
  }
  return target;
}
