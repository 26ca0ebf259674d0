import { Command } from 'commander';
import { DatabaseAuditLogger } from '../../daemon/audit/store.js';
import { PasswordHasher } from '../../daemon/auth/passwords.js';
import { systemClock } from '../../daemon/clock.js';
import { createLogger } from '../../daemon/logger.js';
import { Database } from '../../daemon/storage/database.js';
import { migrateToLatest } from '../../daemon/storage/migrator.js';
import { UserAdminService } from '../../daemon/users/user-admin.js';
import { GatewayError } from '../../daemon/errors.js';
import { daemonConfig, globals, readStdinSecret } from '../core/context.js';
import { CliError, printSecretOnce } from '../core/output.js';
import { passwordFromOptions } from '../core/prompt.js';

/**
 * `keen-admin init`: the only command that opens the database itself (same
 * config and environment as the daemon), to make the first platform admin.
 */
export function initCommand(): Command {
  return new Command('init')
    .description('first run only: create the platform admin and print an admin API key once')
    .requiredOption('--email <email>', 'the administrator\'s email')
    .option('--password-stdin', 'also set a password (for signing in), read from standard input')
    .option('--password', 'also set a password, asked at a hidden prompt, twice (a flag: it takes no value)')
    .option('-c, --config <file>', 'the daemon\'s YAML config (default: $KEEN_CONFIG)')
    .addHelpText('after', '\nExample:\n  keen-admin init --email ops@example.com\n  export KEEN_API_KEY=ak_live_...   # the key it printed')
    .action(async (opts, cmd: Command) => {
      const config = daemonConfig(opts.config);
      // Asked before the database is opened, so a cancelled prompt leaves no trace.
      const password = await passwordFromOptions(opts, readStdinSecret);
      const logger = createLogger('silent');
      const database = new Database({ url: config.database.url, poolMax: 2, connectTimeoutMs: config.database.connect_timeout_ms, busyTimeoutMs: config.database.busy_timeout_ms, statementTimeoutMs: config.database.statement_timeout_ms, queryTimeoutMs: config.database.query_timeout_ms, keepAliveIdleMs: config.database.keepalive_idle_ms, logger });
      let audit: DatabaseAuditLogger | undefined;
      try {
        await migrateToLatest(database);
        audit = new DatabaseAuditLogger({ database, clock: systemClock, logger });
        const service = new UserAdminService({ database, clock: systemClock, hasher: new PasswordHasher({ maxConcurrent: 1 }), audit });
        const r = await service.bootstrap({ email: opts.email, ...(password !== undefined ? { password } : {}) });
        if (!globals(cmd).json) process.stdout.write(`created platform admin ${r.user.email} (${r.user.id})\n`);
        printSecretOnce(globals(cmd), { success: true, user: r.user, api_key: r.api_key, key: r.key }, 'admin API key', r.key);
      } catch (err) {
        if (err instanceof GatewayError) throw new CliError(err.message, 1, err.code);
        throw err;
      } finally {
        await audit?.close().catch(() => undefined);
        await database.close().catch(() => undefined);
      }
    });
}
