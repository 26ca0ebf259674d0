#!/usr/bin/env node
/**
 * `keen-gateway start|migrate [--config FILE]`, `keen-gateway restore FILE` (README.md, "Running it").
 * Exit codes: 0 success, 1 failed operation, 2 usage error.
 */
import { Command, CommanderError } from 'commander';
import { SandboxUnavailableError } from './agents/sandbox.js';
import { restoreCommand } from './backup/restore-command.js';
import { ConfigError } from './config/errors.js';
import { loadConfig, redactUrl, type ResolvedConfig } from './config/load.js';
import { Container } from './container.js';
import { DataDirLockedError } from './data-dir-lock.js';
import { createLogger, flushLogger, type Logger } from './logger.js';
import { listen } from './server.js';
import { databaseFromConfig } from './storage/database.js';
import { migrateToLatest } from './storage/migrator.js';
import { VERSION } from './version.js';

function fail(message: string, code = 1): never {
  process.stderr.write(`keen-gateway: ${message}\n`);
  process.exit(code);
}

function readConfig(file: string | undefined): ResolvedConfig {
  try {
    return loadConfig({ file, env: process.env });
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
}

function describeStartupError(err: unknown, config: ResolvedConfig): string {
  const msg = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: string }).code;
  if (code === 'EADDRINUSE') return `cannot listen on ${config.server.host}:${config.server.port}: address in use`;
  if (code === 'EACCES') return `cannot listen on ${config.server.host}:${config.server.port}: permission denied`;
  const cause = (err as { cause?: { message?: string } }).cause?.message;
  return `cannot start: ${msg}${cause && !msg.includes(cause) ? ` (${cause})` : ''} [database ${redactUrl(config.database.url)}]`;
}

async function start(options: { config?: string }): Promise<void> {
  // Database files, WAL, secrets and workspaces are never group- or world-readable, whatever the caller's umask.
  process.umask(0o077);
  const config = readConfig(options.config);
  const logger = createLogger(config.log.level);
  let container: Container;
  try {
    container = new Container({ config, logger });
    await container.start();
  } catch (err) {
    if (err instanceof ConfigError || err instanceof SandboxUnavailableError || err instanceof DataDirLockedError)
      fail(err.message);
    fail(describeStartupError(err, config));
  }
  let running: Awaited<ReturnType<typeof listen>>;
  try {
    running = await listen(container);
  } catch (err) {
    await container.stop();
    fail(describeStartupError(err, config));
  }
  let signals = 0;
  const shutdown = (signal: string): void => {
    signals += 1;
    if (signals > 1) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    logger.info({ signal }, 'shutting down');
    running.close().then(
      () => exitFlushed(logger, 0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        exitFlushed(logger, 1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('unhandledRejection', (reason) => logUnhandled(logger, reason));
  // A crash still exits 1 with the stack on stderr, as without a handler, once the log is written out.
  process.on('uncaughtException', (err) => {
    process.stderr.write(`${err instanceof Error && err.stack ? err.stack : String(err)}\n`);
    logger.fatal({ err }, 'uncaught exception: exiting');
    exitFlushed(logger, 1);
  });
}

/** Exits once the buffered log lines are written (2 s at most); lines still held are written at exit. */
function exitFlushed(logger: Logger, code: number): void {
  const timer = setTimeout(() => process.exit(code), 2000);
  void flushLogger(logger).then(() => {
    clearTimeout(timer);
    process.exit(code);
  });
}

function logUnhandled(logger: Logger, reason: unknown): void {
  logger.error({ err: reason }, 'unhandled promise rejection');
}

async function migrate(options: { config?: string }): Promise<void> {
  process.umask(0o077);
  const config = readConfig(options.config);
  const logger = createLogger(config.log.level === 'info' ? 'warn' : config.log.level);
  const database = databaseFromConfig(config, {
    poolMax: 2,
    // An operator runs this and watches it: a long migration must not be cut off.
    statementTimeoutMs: 0,
    queryTimeoutMs: 0,
    logger,
  });
  try {
    const report = await migrateToLatest(database);
    process.stdout.write(
      report.applied.length > 0
        ? `applied ${report.applied.length} migration(s): ${report.applied.join(', ')}\n`
        : `database is up to date (${report.current ?? 'no migrations'})\n`,
    );
  } catch (err) {
    fail(describeStartupError(err, config));
  } finally {
    await database.close().catch(() => undefined);
  }
}

const program = new Command('keen-gateway')
  .description('keen-gateway: the API gateway in front of keen agents')
  .version(VERSION)
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

program
  .command('start')
  .description('run the daemon (applies pending migrations first)')
  .option('-c, --config <file>', 'YAML configuration file (default: $KEEN_CONFIG)')
  .addHelpText('after', '\nExample:\n  keen-gateway start --config /etc/keen/gateway.yaml')
  .action(start);

program
  .command('migrate')
  .description('apply pending schema migrations and exit')
  .option('-c, --config <file>', 'YAML configuration file (default: $KEEN_CONFIG)')
  .addHelpText('after', '\nExample:\n  KEEN_DATABASE_URL=postgres://keen@db/keen keen-gateway migrate')
  .action(migrate);

program
  .command('restore')
  .description(
    'replace the SQLite database, secrets and audit files with a backup (keen-admin backup), after checking it; the daemon must be stopped',
  )
  .argument('<file>', 'the backup file written by keen-admin backup --to')
  .option('-c, --config <file>', 'YAML configuration file (default: $KEEN_CONFIG)')
  .option('--force', 'replace an existing database (it is moved aside to keen.db.before-restore-<time>, not deleted)')
  .addHelpText(
    'after',
    '\nExample:\n  systemctl stop keen-gateway\n  keen-gateway restore /backups/keen-20260101T000000Z.tar --config /etc/keen/gateway.yaml --force',
  )
  .action(restoreCommand);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help')
      process.exit(0);
    process.exit(2);
  }
  fail(err instanceof Error ? err.message : String(err));
}
