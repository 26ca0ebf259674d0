import { Command } from 'commander';
import { VERSION } from '../daemon/cli-shared.js';
import { initCommand } from './commands/init.js';
import { keysCommand } from './commands/keys.js';
import { tenantsCommand } from './commands/tenants.js';
import { usersCommand } from './commands/users.js';
import { creditsCommand } from './commands/credits.js';
import { usageCommand } from './commands/usage.js';
import { budgetsCommand } from './commands/budgets.js';
import { webhooksCommand } from './commands/webhooks.js';
import { auditCommand } from './commands/audit.js';
import { sessionsCommand } from './commands/sessions.js';
import { loginCommand, logoutCommand } from './commands/login.js';
import { doctorCommand } from './commands/doctor.js';
import { backupCommand } from './commands/backup.js';
import { completionCommand } from './commands/completion.js';
import { warnIfKeyInArguments } from './core/context.js';

/** A value glued to a secret option (`--password=...`): commander would echo it in its error. */
const SECRET_VALUE = /(--[\w-]*(?:password|api-key|secret)[\w-]*=)[^\s']*/gi;

/** Commander's "too many arguments" error, up to the list of the arguments it got. */
const EXCESS_ARGUMENTS = /(too many arguments.*? but got \d+): .*$/m;

/** Commander's usage errors, without secrets, and with a hint where a password was given as an argument. */
function usageError(cmd: Command) {
  return (message: string, write: (text: string) => void) => {
    // Commander 15 lists the excess arguments themselves: one may be a password typed after --password.
    let m = message.replace(SECRET_VALUE, '$1***').replace(EXCESS_ARGUMENTS, '$1 (not shown: one may be a secret).');
    if (/too many arguments/.test(m) && cmd.options.some((o) => o.long === '--password')) {
      m +=
        '--password takes no value (arguments show in ps and shell history): it asks at a hidden prompt; or pipe the password with --password-stdin\n';
    }
    write(m);
  };
}

/** Applies the shared settings to a command and all of its subcommands. */
function harden(cmd: Command): Command {
  cmd
    .exitOverride()
    .showHelpAfterError('(add --help for usage)')
    .configureHelp({ showGlobalOptions: true })
    .configureOutput({ outputError: usageError(cmd) });
  for (const sub of cmd.commands) harden(sub);
  return cmd;
}

/** What `keen-admin GROUP --help` shows under "Examples:": the group's commands at work. */
const GROUP_EXAMPLES: Record<string, string[]> = {
  users: [
    'keen-admin users create --email ana@example.com --tier team --password',
    'keen-admin users suspend ana@example.com',
  ],
  tenants: [
    'keen-admin tenants create "Acme Corp"',
    'keen-admin tenants update "Acme Corp" --budget 5000 --budget-period month',
  ],
  keys: [
    'keen-admin keys create --user ana@example.com --name ci --expires 90d',
    'keen-admin keys roll key_01j... --grace 1h',
  ],
  budgets: ['keen-admin budgets list --subject api_key'],
  webhooks: ['keen-admin webhooks list', 'keen-admin webhooks deliveries wep_01j... --status failed'],
  audit: ['keen-admin audit tail --follow', 'keen-admin audit verify'],
  sessions: ['keen-admin sessions list --status running', 'keen-admin sessions watch ses_01j...'],
};

/** The command tree. Each command group lives in its own module under cli/commands/. */
export function buildProgram(): Command {
  const program = new Command('keen-admin')
    .description(
      'keen-admin: operate a keen-gateway daemon (users, tenants, keys, credits, budgets, usage, webhooks, audit, sessions, backups)',
    )
    .version(VERSION)
    .option(
      '--url <url>',
      "daemon URL (env KEEN_URL, else the daemon's KEEN_HOST/KEEN_PORT/KEEN_CONFIG; then the profile's, else http://127.0.0.1:8080)",
    )
    .option('--api-key <key>', 'admin API key (prefer KEEN_API_KEY or keen-admin login: arguments show in ps)')
    .option('--profile <name>', "use this saved profile (env KEEN_PROFILE; default: the file's default profile)")
    .option('--json', 'print one JSON document (JSON Lines when streaming)')
    .option('--verbose', 'print stack traces of errors')
    .addHelpText(
      'after',
      '\nConnection, first match wins:\n' +
        '  1. --url, --api-key, --profile\n' +
        "  2. KEEN_URL, KEEN_API_KEY, KEEN_PROFILE; then (URL only) the daemon's own address: KEEN_HOST/KEEN_PORT over\n" +
        '     server.host/port of --config FILE (init, doctor, backup) or KEEN_CONFIG\n' +
        '  3. the default profile saved by keen-admin login ($XDG_CONFIG_HOME/keen/admin.json)\n' +
        '  4. http://127.0.0.1:8080\n' +
        'Exit codes: 0 ok, 1 operation failed, 2 usage error, 3 daemon unreachable.\n' +
        'With --json, an error is {"success":false,"error":{"code","message","request_id"}} on stderr.\n' +
        '\nExample:\n  keen-admin login --url https://keen.example.com\n  keen-admin users list',
    )
    .hook('preAction', (root) => warnIfKeyInArguments(root));
  program.addCommand(initCommand());
  program.addCommand(loginCommand());
  program.addCommand(logoutCommand());
  program.addCommand(usersCommand());
  program.addCommand(tenantsCommand());
  program.addCommand(keysCommand());
  program.addCommand(creditsCommand());
  program.addCommand(usageCommand());
  program.addCommand(budgetsCommand());
  program.addCommand(webhooksCommand());
  program.addCommand(auditCommand());
  program.addCommand(sessionsCommand());
  program.addCommand(doctorCommand());
  program.addCommand(backupCommand());
  program.addCommand(completionCommand());
  for (const group of program.commands) {
    const examples = GROUP_EXAMPLES[group.name()];
    if (examples && group.commands.length > 0)
      group.addHelpText('after', `\nExamples:\n${examples.map((e) => `  ${e}`).join('\n')}`);
  }
  return harden(program);
}
