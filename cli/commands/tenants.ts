import { randomUUID } from 'node:crypto';
import { Command } from 'commander';
import { formatCredits, isId, isIdempotencyKey, parseCredits } from '../../daemon/cli-shared.js';
import { ConnectionError, NotFoundError, TimeoutError, type KeenClient } from '../../sdk/src/index.js';
import { clientFor, globals } from '../core/context.js';
import { CliError, printResult } from '../core/output.js';
import { budgetUpdateCommand } from './budgets.js';

const MAX_PAGE = 100;
const POOL_COLUMNS = ['id', 'created_at', 'kind', 'amount', 'balance_after', 'user_id', 'transaction_id', 'reason'];

/** AMOUNT: the server's own parser (decimal text, > 0, at most 6 decimals), so a typo never leaves the machine. */
function parseAmount(value: string): number {
  try {
    return formatCredits(parseCredits(value, 'AMOUNT'));
  } catch (err) {
    throw new CliError(`${(err as Error).message} (got "${value}")`, 2);
  }
}

function parseKey(value: string): string {
  if (!isIdempotencyKey(value))
    throw new CliError('--idempotency-key: expected 1 to 255 printable ASCII characters', 2);
  return value;
}

function parseLimit(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_PAGE)
    throw new CliError(`--limit: expected an integer from 1 to ${MAX_PAGE}, got "${value}"`, 2);
  return n;
}

/** A tenant given as its id (`ten_...`) or its exact name. */
async function resolveTenant(client: KeenClient, idOrName: string): Promise<string> {
  if (isId(idOrName, 'ten')) return idOrName;
  for await (const t of client.tenants.all({ limit: 200 })) if (t.name === idOrName) return t.id;
  throw new CliError(`no tenant named "${idOrName}"`, 1, 'NOT_FOUND');
}

/** Pool balances by tenant id; empty when the daemon predates credit pools. */
async function poolBalances(client: KeenClient): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  try {
    for await (const p of client.tenants.allPools({ limit: MAX_PAGE })) out.set(p.tenant_id, p.balance);
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
  }
  return out;
}

/** `keen-admin tenants ...` */
export function tenantsCommand(): Command {
  const tenants = new Command('tenants').description('create and list tenants, grant into and read their credit pools');
  tenants
    .command('create <name>')
    .description('create a tenant (platform admins)')
    .addHelpText('after', '\nExample:\n  keen-admin tenants create "Acme Corp"')
    .action(async (name: string, _opts, cmd: Command) => {
      const tenant = await clientFor(cmd).tenants.create({ name });
      printResult(globals(cmd), { success: true, tenant }, [{ ...tenant }], ['id', 'name', 'created_at']);
    });
  tenants
    .command('list')
    .description("list tenants with their credit pool's balance")
    .addHelpText('after', '\nExample:\n  keen-admin tenants list --json')
    .action(async (_opts, cmd: Command) => {
      const client = clientFor(cmd);
      const r = await client.tenants.list({ limit: 200 });
      const pools = await poolBalances(client);
      const rows = r.tenants.map((t) => ({ ...t, pool: pools.get(t.id) ?? 0 }));
      printResult(globals(cmd), { ...r, tenants: rows }, rows, ['id', 'name', 'pool', 'created_at']);
    });
  tenants
    .command('grant <tenant> <amount>')
    .description(
      "grant credits into a tenant's credit pool (platform admins); its tenant admins grant them on to members; safe to retry with the same --idempotency-key",
    )
    .option('--reason <text>', 'why (recorded in the pool ledger and the audit log)', 'granted with keen-admin')
    .option(
      '--idempotency-key <key>',
      'makes a re-run answer the first grant instead of granting again (default: a new random key)',
      parseKey,
    )
    .addHelpText(
      'after',
      '\nExample:\n  keen-admin tenants grant ten_01j... 500 --reason "Q3 allotment" --idempotency-key acme-q3\n  keen-admin tenants grant "Acme Corp" 12.5',
    )
    .action(
      async (tenant: string, amountText: string, opts: { reason: string; idempotencyKey?: string }, cmd: Command) => {
        const amount = parseAmount(amountText);
        const client = clientFor(cmd);
        const tenantId = await resolveTenant(client, tenant);
        // One key for this invocation: the SDK's retries reuse it, so a retried grant lands once.
        const key = opts.idempotencyKey ?? randomUUID();
        let r: Awaited<ReturnType<KeenClient['tenants']['grantCredits']>>;
        try {
          r = await client.tenants.grantCredits(tenantId, { amount, reason: opts.reason }, { idempotencyKey: key });
        } catch (err) {
          if (err instanceof ConnectionError || err instanceof TimeoutError) {
            process.stderr.write(`keen-admin: re-run with --idempotency-key ${key} to complete this grant safely\n`);
          }
          throw err;
        }
        printResult(
          globals(cmd),
          r,
          [{ transaction: r.transaction.id, tenant: tenantId, amount: r.transaction.amount, pool: r.pool.balance }],
          ['transaction', 'tenant', 'amount', 'pool'],
        );
      },
    );
  tenants
    .command('credits <tenant>')
    .description("show a tenant's credit pool and its ledger, newest first")
    .option('--limit <n>', `entries per page (1-${MAX_PAGE})`, parseLimit, 20)
    .option('--cursor <cursor>', 'continue with older entries (printed after a full page)')
    .addHelpText('after', '\nExample:\n  keen-admin tenants credits ten_01j... --limit 50')
    .action(async (tenant: string, opts: { limit: number; cursor?: string }, cmd: Command) => {
      const client = clientFor(cmd);
      const tenantId = await resolveTenant(client, tenant);
      const r = await client.tenants.credits(tenantId, {
        limit: opts.limit,
        ...(opts.cursor ? { cursor: opts.cursor } : {}),
      });
      if (globals(cmd).json) {
        printResult(globals(cmd), r, [], []);
        return;
      }
      process.stdout.write(`pool ${r.pool.tenant_id}: ${r.pool.balance} credits\n`);
      printResult(globals(cmd), r, r.entries as unknown as Array<Record<string, unknown>>, POOL_COLUMNS);
      if (r.next_cursor) process.stderr.write(`more: --cursor ${r.next_cursor}\n`);
    });
  tenants.addCommand(budgetUpdateCommand('tenant', 'tenant', '"Acme Corp"'));
  return tenants;
}
