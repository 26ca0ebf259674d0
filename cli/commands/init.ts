import { existsSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import {
  AuditRepository,
  accountRepositories,
  createLogger,
  DatabaseAuditLogger,
  databaseFromConfig,
  GatewayError,
  migrateToLatest,
  PasswordHasher,
  presentBootstrap,
  readDatabaseId,
  systemClock,
  UserAdminService,
} from '../../daemon/operator.js';
import { connectionFor, daemonConfig, globals, readStdinSecret } from '../core/context.js';
import { CliError, printSecretOnce } from '../core/output.js';
import { daemonAddress, DEFAULT_URL, shownUrl, sourceName } from '../core/profile.js';
import { passwordFromOptions } from '../core/prompt.js';

/** What a daemon at the resolved address says about itself: null when none answers. */
async function askDaemon(url: string): Promise<{ databaseId: string | null } | null> {
  try {
    const res = await fetch(`${url.replace(/\/+$/, '')}/health/live`, { signal: AbortSignal.timeout(3000) });
    const body = (await res.json().catch(() => null)) as { database_id?: unknown } | null;
    return { databaseId: typeof body?.database_id === 'string' ? body.database_id : null };
  } catch {
    return null;
  }
}

/**
 * `keen-admin init`: the only command that opens the database itself (same
 * config and environment as the daemon), to make the first platform admin.
 * It says which config and database it used, and refuses when the daemon that
 * answers at the resolved address serves another database (its key would be refused).
 */
export function initCommand(): Command {
  return new Command('init')
    .description('first run only: create the platform admin and print an admin API key once')
    .requiredOption('--email <email>', "the administrator's email")
    .option('--password-stdin', 'also set a password (for signing in), read from standard input')
    .option('--password', 'also set a password, asked at a hidden prompt, twice (a flag: it takes no value)')
    .option('-c, --config <file>', "the daemon's YAML config (default: $KEEN_CONFIG)")
    .addHelpText(
      'after',
      "\nRun it with the daemon's config and environment (--config or KEEN_CONFIG, KEEN_DATABASE_URL, KEEN_DATA_DIR):\n" +
        'it prints the config file and database it opened, and refuses (exit 1, DATABASE_MISMATCH) when the daemon\n' +
        'answering at the resolved address (see keen-admin --help) serves another database.\n' +
        '\nExample:\n  keen-admin init --email ops@example.com --config /etc/keen/gateway.yaml\n  export KEEN_API_KEY=ak_live_...   # the key it printed',
    )
    .action(async (opts, cmd: Command) => {
      const config = daemonConfig(opts.config);
      const file = opts.config ?? (process.env.KEEN_CONFIG || undefined);
      const configShown = file ? path.resolve(file) : 'none (defaults and KEEN_* environment)';
      const databaseShown = shownUrl(config.database.url);
      process.stderr.write(`keen-admin init: config ${configShown}\nkeen-admin init: database ${databaseShown}\n`);

      let daemonUrl: string;
      let daemonSource: string;
      try {
        const conn = connectionFor(cmd);
        daemonUrl = conn.url;
        daemonSource = sourceName(conn);
      } catch (err) {
        if (err instanceof CliError && err.code === 'INVALID_URL') throw err;
        // A broken profile file: the daemon's own settings still say where it is.
        daemonUrl = process.env.KEEN_URL || daemonAddress(process.env, opts.config) || DEFAULT_URL;
        daemonSource = process.env.KEEN_URL ? 'KEEN_URL' : "the daemon's settings or the default";
      }
      const daemon = await askDaemon(daemonUrl);
      const mismatch = () =>
        new CliError(
          `the daemon at ${shownUrl(daemonUrl)} (from ${daemonSource}) serves another database than ${databaseShown}: a key made here would be refused. ` +
            "Run init with the daemon's config and environment (--config FILE, KEEN_DATABASE_URL, KEEN_DATA_DIR), or name the daemon that uses this database with --url",
          1,
          'DATABASE_MISMATCH',
        );
      const sqliteFile = config.database.url.startsWith('sqlite:') ? config.database.url.slice('sqlite:'.length) : null;
      // Refused before opening: opening would create the file.
      if (daemon?.databaseId && sqliteFile && sqliteFile !== ':memory:' && !existsSync(sqliteFile)) throw mismatch();
      if (!daemon)
        process.stderr.write(
          `keen-admin init: no daemon answers at ${shownUrl(daemonUrl)} (from ${daemonSource}); start it with this config and database\n`,
        );

      // Asked before the database is opened, so a cancelled prompt leaves no trace.
      const password = await passwordFromOptions(opts, readStdinSecret);
      const logger = createLogger('silent');
      const database = databaseFromConfig(config, { poolMax: 2, logger });
      let audit: DatabaseAuditLogger | undefined;
      try {
        if (daemon?.databaseId && (await readDatabaseId(database)) !== daemon.databaseId) throw mismatch();
        await migrateToLatest(database);
        const audits = new AuditRepository(database);
        audit = new DatabaseAuditLogger({ database, audits, clock: systemClock, logger });
        const service = new UserAdminService({
          database,
          ...accountRepositories(database),
          clock: systemClock,
          hasher: new PasswordHasher({ maxConcurrent: 1 }),
          audit,
        });
        const r = presentBootstrap(
          await service.bootstrap({ email: opts.email, ...(password !== undefined ? { password } : {}) }),
        );
        if (!globals(cmd).json)
          process.stdout.write(`created platform admin ${r.user.email} (${r.user.id}) in ${databaseShown}\n`);
        printSecretOnce(
          globals(cmd),
          {
            success: true,
            user: r.user,
            api_key: r.api_key,
            key: r.key,
            config_file: file ? path.resolve(file) : null,
            database: databaseShown,
          },
          'admin API key',
          r.key,
        );
      } catch (err) {
        if (err instanceof GatewayError) throw new CliError(err.message, 1, err.code);
        throw err;
      } finally {
        await audit?.close().catch(() => undefined);
        await database.close().catch(() => undefined);
      }
    });
}
