import { Command } from 'commander';
import type { AdminApiKeyCreateRequest, ApiKey, ApiKeyUpdateRequest, BudgetRequest } from '../../sdk/src/index.js';
import { clientFor, globals, parseExpiry, parseGrace, parsePositiveInt, parseScopes } from '../core/context.js';
import { CliError, printResult, printSecretOnce } from '../core/output.js';
import { addBudgetOptions, budgetFromOptions } from './budgets.js';

const COLUMNS = [
  'id',
  'user_id',
  'name',
  'prefix',
  'scopes',
  'rate_limit_per_hour',
  'status',
  'expires_at',
  'last_used_at',
  'budget',
];

type Scopes = NonNullable<ApiKeyUpdateRequest['scopes']>;

/** A key as a table row: its budget as `used/amount per period`. */
function row(key: ApiKey): Record<string, unknown> {
  const b = key.budget;
  return { ...key, budget: b ? `${b.used}/${b.amount} per ${b.period}` : null };
}

/** `keen-admin keys ...` */
export function keysCommand(): Command {
  const keys = new Command('keys').description('create, list, update, roll and revoke API keys');
  const create = keys
    .command('create')
    .description('create an API key for a user; the key is printed once')
    .requiredOption('--user <user>', 'owner: id or email')
    .requiredOption('--name <name>', 'a name to recognise the key by')
    .option(
      '--scopes <list>',
      "comma-separated subset of agents:execute,sessions:read,credits:read,keys:manage,admin (default: all of the owner's)",
    )
    .option('--rate-limit <n>', 'requests per hour for this key (default 1000)', parsePositiveInt('--rate-limit'))
    .option('--expires <when>', 'lifetime (90d, 12h, 30m) or a future date (2027-01-31); a bare number is refused')
    .addHelpText(
      'after',
      '\nExamples:\n  keen-admin keys create --user ana@example.com --name ci --scopes agents:execute,sessions:read --expires 90d\n  keen-admin keys create --user ana@example.com --name ci --budget 20 --budget-period day',
    )
    .action(async (opts, cmd: Command) => {
      const body: AdminApiKeyCreateRequest = { user_id: opts.user, name: opts.name };
      // Checked before connecting: a typo is a usage error that names the choices.
      if (opts.scopes !== undefined) body.scopes = parseScopes(String(opts.scopes)) as Scopes;
      if (opts.rateLimit) body.rate_limit_per_hour = opts.rateLimit;
      if (opts.expires) body.expires_at = parseExpiry(opts.expires);
      const budget = budgetFromOptions(opts);
      if (budget) body.budget = budget as BudgetRequest; // the period is one of --budget-period's choices
      const r = await clientFor(cmd).adminKeys.create(body);
      if (!globals(cmd).json) printResult({}, r, [row(r.api_key)], COLUMNS);
      printSecretOnce(globals(cmd), r, 'key', r.key);
    });
  keys
    .command('list')
    .description('list API keys (never the keys themselves)')
    .option('--user <user>', "only this user's keys (id or email)")
    .addHelpText('after', '\nExample:\n  keen-admin keys list --user ana@example.com')
    .action(async (opts, cmd: Command) => {
      const client = clientFor(cmd);
      const apiKeys = await client.adminKeys.list({
        ...(opts.user === undefined ? {} : { user_id: opts.user }),
        limit: 200,
      });
      const r = { success: true, api_keys: apiKeys };
      if (globals(cmd).json) {
        printResult(globals(cmd), r, [], COLUMNS);
        return;
      }
      // Per-key spend over the last 30 days, from the usage report (`keen-admin usage --by key` has the rest).
      const usage = await client.usage.admin({
        group_by: 'key',
        since: '30d',
        ...(opts.user ? { user_id: opts.user } : {}),
      });
      const spent = new Map(usage.rows.filter((u) => u.api_key_id != null).map((u) => [u.api_key_id!, u]));
      const rows = apiKeys.map((k) => ({
        ...row(k),
        charged_30d: spent.get(k.id)?.charged ?? 0,
        sessions_30d: spent.get(k.id)?.sessions ?? 0,
      }));
      printResult(globals(cmd), r, rows, [...COLUMNS, 'charged_30d', 'sessions_30d']);
    });
  const update = keys
    .command('update <id>')
    .description("change an API key's name, scopes, rate limit, expiry or budget (what is not given stays)")
    .option('--name <name>', 'a new name')
    .option(
      '--scopes <list>',
      'the new scopes, replacing the old: comma-separated subset of agents:execute,sessions:read,credits:read,keys:manage,admin',
    )
    .option('--rate-limit <n>', 'requests per hour for this key', parsePositiveInt('--rate-limit'))
    .option(
      '--expires-at <when>',
      'a new expiry: a future date (2027-01-31, ISO 8601) or a lifetime from now (90d, 12h, 30m)',
    )
    .option('--no-expiry', 'the key no longer expires')
    .addHelpText(
      'after',
      '\nExamples:\n  keen-admin keys update key_01j... --name ci-prod --rate-limit 500\n  keen-admin keys update key_01j... --scopes agents:execute --no-expiry\n  keen-admin keys update key_01j... --budget 20 --budget-period day',
    )
    .action(async (id: string, opts, cmd: Command) => {
      const body: ApiKeyUpdateRequest = {};
      // Checked before connecting: a typo is a usage error.
      if (opts.name !== undefined) body.name = opts.name;
      if (opts.scopes !== undefined) body.scopes = parseScopes(String(opts.scopes)) as Scopes;
      if (opts.rateLimit !== undefined) body.rate_limit_per_hour = opts.rateLimit;
      if (opts.expiresAt !== undefined && opts.expiry === false)
        throw new CliError('--expires-at and --no-expiry contradict each other: give one', 2, 'INVALID_ARGUMENT');
      if (opts.expiresAt !== undefined) body.expires_at = parseExpiry(String(opts.expiresAt), '--expires-at');
      if (opts.expiry === false) body.expires_at = null;
      const budget = budgetFromOptions(opts);
      if (budget !== undefined) body.budget = budget as BudgetRequest | null;
      if (Object.keys(body).length === 0)
        throw new CliError(
          'nothing to change: give --name, --scopes, --rate-limit, --expires-at, --no-expiry, --budget or --no-budget',
          2,
          'INVALID_ARGUMENT',
        );
      const apiKey = await clientFor(cmd).adminKeys.update(id, body);
      printResult(globals(cmd), { success: true, api_key: apiKey }, [row(apiKey)], COLUMNS);
    });
  addBudgetOptions(create, false);
  addBudgetOptions(update);
  keys
    .command('roll <id>')
    .description(
      'give an API key a new secret under the same id; the new key is printed once, the old one works for --grace',
    )
    .option(
      '--grace <duration>',
      'how long the old secret keeps working: 0 (stops at once), 90m, 24h, 7d; at most 30d',
      parseGrace,
      86_400,
    )
    .addHelpText(
      'after',
      '\nExamples:\n  keen-admin keys roll key_01j... --grace 1h\n  keen-admin keys roll key_01j... --grace 0   # a leaked key: the old secret stops now',
    )
    .action(async (id: string, opts, cmd: Command) => {
      // Never retried by the SDK: the new secret is in this answer only, and a lost answer must not roll again.
      const r = await clientFor(cmd).adminKeys.roll(id, { graceSeconds: opts.grace });
      const g = globals(cmd);
      if (!g.json) {
        printResult({}, r, [row(r.api_key)], COLUMNS);
        process.stderr.write(
          opts.grace === 0
            ? 'The old secret stopped working.\n'
            : `The old secret works until ${r.previous_expires_at}.\n`,
        );
      }
      printSecretOnce(g, r, 'key', r.key);
    });
  keys
    .command('revoke <id>')
    .description('revoke an API key at once')
    .addHelpText('after', '\nExample:\n  keen-admin keys revoke key_01j...')
    .action(async (id: string, _opts, cmd: Command) => {
      const apiKey = await clientFor(cmd).adminKeys.revoke(id);
      printResult(
        globals(cmd),
        { success: true, api_key: apiKey },
        [apiKey as unknown as Record<string, unknown>],
        COLUMNS,
      );
    });
  return keys;
}
