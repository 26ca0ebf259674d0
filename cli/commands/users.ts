import { Command, Option } from 'commander';
import type { AdminUserCreateRequest, KeenClient, User, UserTier } from '../../sdk/src/index.js';
import { clientFor, globals, readStdinSecret } from '../core/context.js';
import { printResult } from '../core/output.js';
import { passwordFromOptions } from '../core/prompt.js';
import { budgetUpdateCommand } from './budgets.js';

const COLUMNS = ['id', 'email', 'tenant_id', 'role', 'tier', 'status', 'mfa_enabled', 'created_at'];

/** One user: `{success, user}` as the daemon answers it with --json, else a one-row table. */
function printUser(cmd: Command, user: User): void {
  printResult(globals(cmd), { success: true, user }, [user as unknown as Record<string, unknown>], COLUMNS);
}

/** `keen-admin users ...` */
export function usersCommand(): Command {
  const users = new Command('users').description('create, list and manage users');
  users
    .command('create')
    .description('create a user')
    .requiredOption('--email <email>', 'email address (unique, case-insensitive)')
    .addOption(new Option('--tier <tier>', 'tier').choices(['individual', 'team', 'enterprise']).default('individual'))
    .option('--tenant <id>', 'tenant id (tenant admins: always their own)')
    .addOption(
      new Option('--role <role>', 'member, or admin (tenant admin with --tenant, platform admin without)')
        .choices(['member', 'admin'])
        .default('member'),
    )
    .option('--password-stdin', 'read the password from standard input (never pass it as an argument)')
    .option('--password', 'ask for the password at a hidden prompt, twice (a flag: it takes no value)')
    .addHelpText(
      'after',
      '\nExample:\n  printf %s "$PASSWORD" | keen-admin users create --email ana@example.com --tier team --password-stdin\n  keen-admin users create --email ana@example.com --password   # prompts',
    )
    .action(async (opts, cmd: Command) => {
      const body: AdminUserCreateRequest = { email: opts.email, tier: opts.tier, role: opts.role };
      if (opts.tenant) body.tenant_id = opts.tenant;
      const client = clientFor(cmd); // before any prompt: a missing key is said at once
      const password = await passwordFromOptions(opts, readStdinSecret);
      if (password !== undefined) body.password = password;
      printUser(cmd, await client.users.create(body));
    });
  users
    .command('list')
    .description('list users (newest last), 50 per page')
    .option('--limit <n>', 'page size (1-200)', '50')
    .option('--cursor <id>', 'continue after this user id')
    .addHelpText('after', '\nExample:\n  keen-admin users list --json | jq -r ".users[].email"')
    .action(async (opts, cmd: Command) => {
      const r = await clientFor(cmd).users.list({
        limit: Number(opts.limit),
        ...(opts.cursor === undefined ? {} : { cursor: opts.cursor }),
      });
      printResult(globals(cmd), r, r.users as unknown as Array<Record<string, unknown>>, COLUMNS);
      if (!globals(cmd).json && r.next_cursor) process.stderr.write(`more: --cursor ${r.next_cursor}\n`);
    });
  const single = (
    name: string,
    description: string,
    call: (client: KeenClient, user: string) => Promise<User>,
    example = '',
  ) =>
    users
      .command(`${name} <user>`)
      .description(`${description} (user: id or email)`)
      .addHelpText('after', `\nExample:\n  keen-admin users ${name} ${example || 'ana@example.com'}`)
      .action(async (user: string, _opts, cmd: Command) => {
        printUser(cmd, await call(clientFor(cmd), user));
      });
  single('show', 'show one user', (c, u) => c.users.get(u));
  single('suspend', 'suspend a user: every token stops working at once', (c, u) => c.users.suspend(u));
  single('activate', 'reactivate a suspended user', (c, u) => c.users.activate(u));
  single('reset-mfa', 'turn off MFA for a user who lost their authenticator', (c, u) => c.users.resetMfa(u));
  single('unlock', "lift the sign-in back-off of a user's email after failed sign-ins from elsewhere", (c, u) =>
    c.users.unlock(u),
  );
  users
    .command('set-tier <user> <tier>')
    .description('set the tier of a user (individual, team, enterprise)')
    .addHelpText('after', '\nExample:\n  keen-admin users set-tier ana@example.com team')
    .action(async (user: string, tier: string, _opts, cmd: Command) => {
      printUser(cmd, await clientFor(cmd).users.setTier(user, tier as UserTier));
    });
  users.addCommand(budgetUpdateCommand('user', 'user', 'ana@example.com'));
  return users;
}
