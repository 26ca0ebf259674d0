import { Command } from 'commander';
import { clientFor, globals, parseExpiry, parsePositiveInt, parseScopes } from '../core/context.js';
import { printResult, printSecretOnce } from '../core/output.js';

const COLUMNS = ['id', 'user_id', 'name', 'prefix', 'scopes', 'rate_limit_per_hour', 'status', 'expires_at', 'last_used_at'];

/** `keen-admin keys ...` */
export function keysCommand(): Command {
  const keys = new Command('keys').description('create, list and revoke API keys');
  keys
    .command('create')
    .description('create an API key for a user; the key is printed once')
    .requiredOption('--user <user>', 'owner: id or email')
    .requiredOption('--name <name>', 'a name to recognise the key by')
    .option('--scopes <list>', 'comma-separated subset of agents:execute,sessions:read,credits:read,keys:manage,admin (default: all of the owner\'s)')
    .option('--rate-limit <n>', 'requests per hour for this key (default 1000)', parsePositiveInt('--rate-limit'))
    .option('--expires <when>', 'lifetime (90d, 12h, 30m) or a future date (2027-01-31); a bare number is refused')
    .addHelpText('after', '\nExample:\n  keen-admin keys create --user ana@example.com --name ci --scopes agents:execute,sessions:read --expires 90d')
    .action(async (opts, cmd: Command) => {
      const body: Record<string, unknown> = { user_id: opts.user, name: opts.name };
      // Checked before connecting: a typo is a usage error that names the choices.
      if (opts.scopes !== undefined) body.scopes = parseScopes(String(opts.scopes));
      if (opts.rateLimit) body.rate_limit_per_hour = opts.rateLimit;
      if (opts.expires) body.expires_at = parseExpiry(opts.expires);
      const r = await clientFor(cmd).request<{ api_key: Record<string, unknown>; key: string }>('POST', '/v1/admin/api-keys', { body });
      if (!globals(cmd).json) printResult({}, r, [r.api_key], COLUMNS);
      printSecretOnce(globals(cmd), r, 'key', r.key);
    });
  keys
    .command('list')
    .description('list API keys (never the keys themselves)')
    .option('--user <user>', 'only this user\'s keys (id or email)')
    .addHelpText('after', '\nExample:\n  keen-admin keys list --user ana@example.com')
    .action(async (opts, cmd: Command) => {
      const r = await clientFor(cmd).request<{ api_keys: Array<Record<string, unknown>> }>('GET', '/v1/admin/api-keys', { query: { user_id: opts.user, limit: 200 } });
      printResult(globals(cmd), r, r.api_keys, COLUMNS);
    });
  keys
    .command('revoke <id>')
    .description('revoke an API key at once')
    .addHelpText('after', '\nExample:\n  keen-admin keys revoke key_01j...')
    .action(async (id: string, _opts, cmd: Command) => {
      const r = await clientFor(cmd).request<{ api_key: Record<string, unknown> }>('DELETE', `/v1/admin/api-keys/${encodeURIComponent(id)}`);
      printResult(globals(cmd), r, [r.api_key], COLUMNS);
    });
  return keys;
}
