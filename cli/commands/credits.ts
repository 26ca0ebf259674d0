import { randomUUID } from 'node:crypto';
import { Command } from 'commander';
import { formatCredits, parseCredits } from '../../daemon/credits/money.js';
import { isIdempotencyKey } from '../../daemon/idempotency/key.js';
import { ConnectionError, TimeoutError } from '../../sdk/src/index.js';
import { clientFor, globals } from '../core/context.js';
import { CliError, printResult } from '../core/output.js';

type Row = Record<string, unknown>;
interface Balance {
  balance: number;
  reserved: number;
  available: number;
}
interface Mismatch {
  /** `pool`: a tenant's credit pool (then `tenant_id`, no `user_id`). */
  account?: 'pool';
  user_id?: string;
  tenant_id?: string;
  check: string;
  expected: number;
  actual: number;
  unit: 'credits' | 'seq';
  entry_id?: string;
  message: string;
}

const HISTORY_COLUMNS = ['id', 'created_at', 'kind', 'amount', 'reserved_delta', 'balance_after', 'reserved_after', 'reason', 'session_id'];
const MAX_PAGE = 100;

/** `--amount`: the server's own parser (decimal text, > 0, at most 6 decimals), so a typo never leaves the machine. */
function parseAmount(value: string): number {
  try {
    return formatCredits(parseCredits(value, '--amount'));
  } catch (err) {
    throw new CliError(`${(err as Error).message} (got "${value}")`, 2);
  }
}

function parseKey(value: string): string {
  if (!isIdempotencyKey(value)) throw new CliError('--idempotency-key: expected 1 to 255 printable ASCII characters', 2);
  return value;
}

function parseLimit(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_PAGE) throw new CliError(`--limit: expected an integer from 1 to ${MAX_PAGE}, got "${value}"`, 2);
  return n;
}

/** One line per mismatch, for people reading stderr. */
function describeMismatch(m: Mismatch): string {
  const at = m.entry_id ? ` at ${m.entry_id}` : '';
  const who = m.account === 'pool' ? `pool ${m.tenant_id}` : `user ${m.user_id}`;
  return `mismatch: ${who} ${m.check}${at}: expected ${m.expected}, stored ${m.actual}${m.unit === 'seq' ? ' (seq)' : ''} - ${m.message}`;
}

/** `keen-admin credits ...` */
export function creditsCommand(): Command {
  const credits = new Command('credits')
    .description('grant credits, read balances and ledgers, verify the books')
    .addHelpText('after', '\nExample:\n  keen-admin credits grant --user ana@example.com --amount 50 --reason "trial"\n  keen-admin credits balance --user ana@example.com --json');
  credits
    .command('grant')
    .description('grant credits to a user; safe to retry with the same --idempotency-key')
    .requiredOption('--user <user>', 'recipient: id or email')
    .requiredOption('--amount <credits>', 'credits to add: a decimal > 0 with at most 6 decimals', parseAmount)
    .option('--reason <text>', 'why (recorded in the ledger and the audit log)', 'granted with keen-admin')
    .option('--idempotency-key <key>', 'makes a re-run answer the first grant instead of granting again (default: a new random key)', parseKey)
    .addHelpText('after', '\nExample:\n  keen-admin credits grant --user ana@example.com --amount 12.5 --reason "welcome credits" --idempotency-key onboarding-ana')
    .action(async (opts, cmd: Command) => {
      // One key for this invocation: the SDK's retries reuse it, so a retried grant lands once.
      const key: string = opts.idempotencyKey ?? randomUUID();
      let r: { transaction: Row; balance: Balance; pool?: { tenant_id: string; balance: number } };
      try {
        r = await clientFor(cmd).request('POST', '/v1/admin/credits/grant', {
          body: { user_id: opts.user, amount: opts.amount, reason: opts.reason },
          idempotencyKey: key,
        });
      } catch (err) {
        // The grant may or may not have landed: say how to find out without granting twice.
        if (err instanceof ConnectionError || err instanceof TimeoutError) {
          process.stderr.write(`keen-admin: re-run with --idempotency-key ${key} to complete this grant safely\n`);
        }
        throw err;
      }
      // A tenant admin's grant came out of its tenant's credit pool: show what the pool has left.
      const pool = r.pool ? { pool: r.pool.balance } : {};
      printResult(globals(cmd), r, [{ transaction: r.transaction.id, user: opts.user, amount: r.transaction.amount, ...r.balance, ...pool }], [
        'transaction',
        'user',
        'amount',
        'balance',
        'reserved',
        'available',
        ...(r.pool ? ['pool'] : []),
      ]);
    });
  credits
    .command('balance')
    .description("show a user's balance, reserved and available credits")
    .requiredOption('--user <user>', 'id or email')
    .addHelpText('after', '\nExample:\n  keen-admin credits balance --user ana@example.com')
    .action(async (opts, cmd: Command) => {
      const r = await clientFor(cmd).request<Balance & { user_id: string }>('GET', '/v1/admin/credits/balance', { query: { user_id: opts.user } });
      printResult(globals(cmd), r, [{ user: r.user_id, balance: r.balance, reserved: r.reserved, available: r.available }], ['user', 'balance', 'reserved', 'available']);
    });
  credits
    .command('history')
    .description("show a user's ledger, newest first")
    .requiredOption('--user <user>', 'id or email')
    .option('--limit <n>', `entries per page (1-${MAX_PAGE})`, parseLimit, 50)
    .option('--cursor <cursor>', 'continue with older entries (printed after a full page)')
    .addHelpText('after', '\nExample:\n  keen-admin credits history --user ana@example.com --limit 20')
    .action(async (opts, cmd: Command) => {
      const r = await clientFor(cmd).request<{ transactions: Row[]; next_cursor: string | null }>('GET', '/v1/admin/credits/transactions', {
        query: { user_id: opts.user, limit: opts.limit, cursor: opts.cursor },
      });
      printResult(globals(cmd), r, r.transactions, HISTORY_COLUMNS);
      if (!globals(cmd).json && r.next_cursor) process.stderr.write(`more: --cursor ${r.next_cursor}\n`);
    });
  credits
    .command('verify')
    .description("recompute every balance and tenant credit pool from the ledger; exits 1 on any mismatch (platform admins)")
    .addHelpText('after', '\nExample:\n  keen-admin credits verify || alert "credit ledger mismatch"')
    .action(async (_opts, cmd: Command) => {
      const r = await clientFor(cmd).request<{ ok: boolean; mismatches: Mismatch[] }>('POST', '/v1/admin/credits/verify', { body: {} });
      if (globals(cmd).json) process.stdout.write(JSON.stringify(r) + '\n');
      if (r.ok) {
        if (!globals(cmd).json) process.stdout.write('ledger consistent\n');
        return;
      }
      for (const m of r.mismatches) process.stderr.write(describeMismatch(m) + '\n');
      throw new CliError(`the ledger has ${r.mismatches.length} mismatch${r.mismatches.length === 1 ? '' : 'es'}`, 1, 'LEDGER_MISMATCH');
    });
  return credits;
}
