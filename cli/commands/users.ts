import { Command, Option } from 'commander';
import { clientFor, globals, readStdinSecret } from '../core/context.js';
import { printResult } from '../core/output.js';
import { passwordFromOptions } from '../core/prompt.js';

type User = Record<string, unknown>;
const COLUMNS = ['id', 'email', 'tenant_id', 'role', 'tier', 'status', 'mfa_enabled', 'created_at'];

/** `keen-admin users ...` */
export function usersCommand(): Command {
  const users = new Command('users').description('create, list and manage users');
  users
    .command('create')
    .description('create a user')
    .requiredOption('--email <email>', 'email address (unique, case-insensitive)')
    .addOption(new Option('--tier <tier>', 'tier').choices(['individual', 'team', 'enterprise']).default('individual'))
    .option('--tenant <id>', 'tenant id (tenant admins: always their own)')
    .addOption(new Option('--role <role>', 'member, or admin (tenant admin with --tenant, platform admin without)').choices(['member', 'admin']).default('member'))
    .option('--password-stdin', 'read the password from standard input (never pass it as an argument)')
    .option('--password', 'ask for the password at a hidden prompt, twice (a flag: it takes no value)')
    .addHelpText('after', '\nExample:\n  printf %s "$PASSWORD" | keen-admin users create --email ana@example.com --tier team --password-stdin\n  keen-admin users create --email ana@example.com --password   # prompts')
    .action(async (opts, cmd: Command) => {
      const body: Record<string, unknown> = { email: opts.email, tier: opts.tier, role: opts.role };
      if (opts.tenant) body.tenant_id = opts.tenant;
      const client = clientFor(cmd); // before any prompt: a missing key is said at once
      const password = await passwordFromOptions(opts, readStdinSecret);
      if (password !== undefined) body.password = password;
      const r = await client.request<{ user: User }>('POST', '/v1/admin/users', { body });
      printResult(globals(cmd), r, [r.user], COLUMNS);
    });
  users
    .command('list')
    .description('list users (newest last), 50 per page')
    .option('--limit <n>', 'page size (1-200)', '50')
    .option('--cursor <id>', 'continue after this user id')
    .addHelpText('after', '\nExample:\n  keen-admin users list --json | jq -r ".users[].email"')
    .action(async (opts, cmd: Command) => {
      const r = await clientFor(cmd).request<{ users: User[]; next_cursor: string | null }>('GET', '/v1/admin/users', {
        query: { limit: opts.limit, cursor: opts.cursor },
      });
      printResult(globals(cmd), r, r.users, COLUMNS);
      if (!globals(cmd).json && r.next_cursor) process.stderr.write(`more: --cursor ${r.next_cursor}\n`);
    });
  const single = (name: string, description: string, path: (id: string) => string, method = 'POST', example = '') =>
    users
      .command(`${name} <user>`)
      .description(`${description} (user: id or email)`)
      .addHelpText('after', `\nExample:\n  keen-admin users ${name} ${example || 'ana@example.com'}`)
      .action(async (user: string, _opts, cmd: Command) => {
        const r = await clientFor(cmd).request<{ user: User }>(method, path(encodeURIComponent(user)), method === 'POST' ? { body: {} } : {});
        printResult(globals(cmd), r, [r.user], COLUMNS);
      });
  single('show', 'show one user', (id) => `/v1/admin/users/${id}`, 'GET');
  single('suspend', 'suspend a user: every token stops working at once', (id) => `/v1/admin/users/${id}/suspend`);
  single('activate', 'reactivate a suspended user', (id) => `/v1/admin/users/${id}/activate`);
  single('reset-mfa', 'turn off MFA for a user who lost their authenticator', (id) => `/v1/admin/users/${id}/reset-mfa`);
  single('unlock', "lift the sign-in back-off of a user's email after failed sign-ins from elsewhere", (id) => `/v1/admin/users/${id}/unlock`);
  users
    .command('set-tier <user> <tier>')
    .description('set the tier of a user (individual, team, enterprise)')
    .addHelpText('after', '\nExample:\n  keen-admin users set-tier ana@example.com team')
    .action(async (user: string, tier: string, _opts, cmd: Command) => {
      const r = await clientFor(cmd).request<{ user: User }>('POST', `/v1/admin/users/${encodeURIComponent(user)}/tier`, { body: { tier } });
      printResult(globals(cmd), r, [r.user], COLUMNS);
    });
  return users;
}
