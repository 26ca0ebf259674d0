import { Command } from 'commander';
import { VERSION } from '../daemon/version.js';
import { initCommand } from './commands/init.js';
import { keysCommand } from './commands/keys.js';
import { tenantsCommand } from './commands/tenants.js';
import { usersCommand } from './commands/users.js';
import { creditsCommand } from './commands/credits.js';
import { auditCommand } from './commands/audit.js';
import { sessionsCommand } from './commands/sessions.js';

/** Applies the shared settings to a command and all of its subcommands. */
function harden(cmd: Command): Command {
  cmd.exitOverride().showHelpAfterError('(add --help for usage)');
  for (const sub of cmd.commands) harden(sub);
  return cmd;
}

/** The command tree. Each command group lives in its own module under cli/commands/. */
export function buildProgram(): Command {
  const program = new Command('keen-admin')
    .description('keen-admin: operate a keen-gateway daemon (users, tenants, keys, credits, audit, sessions)')
    .version(VERSION)
    .option('--url <url>', 'daemon URL (env KEEN_URL)', process.env.KEEN_URL ?? 'http://127.0.0.1:8080')
    .option('--api-key <key>', 'admin API key (prefer the KEEN_API_KEY variable: arguments show in ps)')
    .option('--json', 'print one JSON document (JSON Lines when streaming)')
    .option('--verbose', 'print stack traces of errors')
    .addHelpText('after', '\nConnection: --url / KEEN_URL, and the admin API key in KEEN_API_KEY.\nExit codes: 0 ok, 1 operation failed, 2 usage error, 3 daemon unreachable.');
  program.addCommand(initCommand());
  program.addCommand(usersCommand());
  program.addCommand(tenantsCommand());
  program.addCommand(keysCommand());
  program.addCommand(creditsCommand());
  program.addCommand(auditCommand());
  program.addCommand(sessionsCommand());
  return harden(program);
}
