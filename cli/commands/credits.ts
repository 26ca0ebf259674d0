import { randomUUID } from 'node:crypto';
import { Command } from 'commander';
import { formatCredits, isIdempotencyKey, parseCredits } from '../../daemon/cli-shared.js';
import {
  ConnectionError,
  TimeoutError,
  type CreditAdjustResponse,
  type CreditGrantResponse,
  type CreditMismatch,
  type CreditRefundResponse,
  type CreditVerifyResponse,
} from '../../sdk/src/index.js';
import { clientFor, globals } from '../core/context.js';
import { CliError, printResult } from '../core/output.js';
import { startProgress } from '../core/progress.js';

const HISTORY_COLUMNS = [
  'id',
  'created_at',
  'kind',
  'amount',
  'reserved_delta',
  'balance_after',
  'reserved_after',
  'reason',
  'session_id',
];
const MAX_PAGE = 100;
/** How long `credits verify` waits for the daemon's answer, which comes at the end of the check. */
const VERIFY_TIMEOUT_MS = 60 * 60_000;

/** `--amount`: the server's own parser (decimal text, > 0, at most 6 decimals), so a typo never leaves the machine. */
function parseAmount(value: string): number {
  try {
    return formatCredits(parseCredits(value, '--amount'));
  } catch (err) {
    throw new CliError(`${(err as Error).message} (got "${value}")`, 2);
  }
}

/** `--amount` of `adjust`: signed, never 0; the same parser with negatives allowed. */
function parseSignedAmount(value: string): number {
  try {
    return formatCredits(parseCredits(value, '--amount', { allowNegative: true }));
  } catch (err) {
    throw new CliError(`${(err as Error).message} (got "${value}")`, 2);
  }
}

/** Says how to finish a money command safely when the daemon could not be reached, then rethrows. */
function hintRetry(err: unknown, key: string, what: string): never {
  if (err instanceof ConnectionError || err instanceof TimeoutError) {
    process.stderr.write(`keen-admin: re-run with --idempotency-key ${key} to complete this ${what} safely\n`);
  }
  throw err;
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

/** One line per mismatch, for people reading stderr (`pool`: a tenant's credit pool, then `tenant_id`, no `user_id`). */
function describeMismatch(m: CreditMismatch): string {
  const at = m.entry_id ? ` at ${m.entry_id}` : '';
  const who = m.account === 'pool' ? `pool ${m.tenant_id}` : `user ${m.user_id}`;
  return `mismatch: ${who} ${m.check}${at}: expected ${m.expected}, stored ${m.actual}${m.unit === 'seq' ? ' (seq)' : ''} - ${m.message}`;
}

/** `keen-admin credits ...` */
export function creditsCommand(): Command {
  const credits = new Command('credits')
    .description('grant and adjust credits, refund sessions, read balances and ledgers, verify the books')
    .addHelpText(
      'after',
      '\nExample:\n  keen-admin credits grant --user ana@example.com --amount 50 --reason "trial"\n  keen-admin credits balance --user ana@example.com --json',
    );
  credits
    .command('grant')
    .description('grant credits to a user; safe to retry with the same --idempotency-key')
    .requiredOption('--user <user>', 'recipient: id or email')
    .requiredOption('--amount <credits>', 'credits to add: a decimal > 0 with at most 6 decimals', parseAmount)
    .option('--reason <text>', 'why (recorded in the ledger and the audit log)', 'granted with keen-admin')
    .option(
      '--idempotency-key <key>',
      'makes a re-run answer the first grant instead of granting again (default: a new random key)',
      parseKey,
    )
    .addHelpText(
      'after',
      '\nExample:\n  keen-admin credits grant --user ana@example.com --amount 12.5 --reason "welcome credits" --idempotency-key onboarding-ana',
    )
    .action(async (opts, cmd: Command) => {
      // One key for this invocation: the SDK's retries reuse it, so a retried grant lands once.
      const key: string = opts.idempotencyKey ?? randomUUID();
      let r: CreditGrantResponse;
      try {
        r = await clientFor(cmd).credits.grant(
          { user_id: opts.user, amount: opts.amount, reason: opts.reason },
          { idempotencyKey: key },
        );
      } catch (err) {
        // The grant may or may not have landed: say how to find out without granting twice.
        if (err instanceof ConnectionError || err instanceof TimeoutError) {
          process.stderr.write(`keen-admin: re-run with --idempotency-key ${key} to complete this grant safely\n`);
        }
        throw err;
      }
      // A tenant admin's grant came out of its tenant's credit pool: show what the pool has left.
      const pool = r.pool ? { pool: r.pool.balance } : {};
      printResult(
        globals(cmd),
        r,
        [{ transaction: r.transaction.id, user: opts.user, amount: r.transaction.amount, ...r.balance, ...pool }],
        ['transaction', 'user', 'amount', 'balance', 'reserved', 'available', ...(r.pool ? ['pool'] : [])],
      );
    });
  credits
    .command('adjust')
    .description(
      "correct a user's balance by a signed amount (platform admins); safe to retry with the same --idempotency-key",
    )
    .requiredOption('--user <user>', 'id or email')
    .requiredOption(
      '--amount <credits>',
      'signed credits: -1.5 removes, 2 adds; not 0, at most 6 decimals',
      parseSignedAmount,
    )
    .requiredOption('--reason <text>', 'why (recorded in the ledger and the audit log)')
    .option(
      '--idempotency-key <key>',
      'makes a re-run answer the first adjustment instead of adjusting again (default: a new random key)',
      parseKey,
    )
    .addHelpText(
      'after',
      '\nExample:\n  keen-admin credits adjust --user ana@example.com --amount -1.5 --reason "double-billed run" --idempotency-key fix-4711',
    )
    .action(async (opts, cmd: Command) => {
      const key: string = opts.idempotencyKey ?? randomUUID();
      let r: CreditAdjustResponse;
      try {
        r = await clientFor(cmd).credits.adjust(
          { user_id: opts.user, amount: opts.amount, reason: opts.reason },
          { idempotencyKey: key },
        );
      } catch (err) {
        hintRetry(err, key, 'adjustment');
      }
      printResult(
        globals(cmd),
        r,
        [{ transaction: r.transaction.id, user: opts.user, amount: r.transaction.amount, ...r.balance }],
        ['transaction', 'user', 'amount', 'balance', 'reserved', 'available'],
      );
    });
  credits
    .command('refund')
    .description(
      "refund (part of) a finished session's charge to its user (platform admins); safe to retry with the same --idempotency-key",
    )
    .argument('<session>', 'the session id (ses_...)')
    .option('--amount <credits>', 'credits to give back (default: everything still refundable)', parseAmount)
    .requiredOption('--reason <text>', 'why (recorded in the ledger and the audit log)')
    .option(
      '--idempotency-key <key>',
      'makes a re-run answer the first refund instead of refunding again (default: a new random key)',
      parseKey,
    )
    .addHelpText(
      'after',
      '\nExample:\n  keen-admin credits refund ses_01j... --reason "agent crashed on our side"\n  keen-admin credits refund ses_01j... --amount 0.5 --reason "partial outage" --json',
    )
    .action(async (session: string, opts, cmd: Command) => {
      const key: string = opts.idempotencyKey ?? randomUUID();
      let r: CreditRefundResponse;
      try {
        r = await clientFor(cmd).sessions.refund(
          session,
          { ...(opts.amount === undefined ? {} : { amount: opts.amount }), reason: opts.reason },
          { idempotencyKey: key },
        );
      } catch (err) {
        hintRetry(err, key, 'refund');
      }
      printResult(
        globals(cmd),
        r,
        [
          {
            transaction: r.transaction.id,
            session: r.session_id,
            user: r.user_id,
            amount: r.transaction.amount,
            charged: r.charged,
            refunded: r.refunded,
            refundable: r.refundable,
            balance: r.balance.balance,
          },
        ],
        ['transaction', 'session', 'user', 'amount', 'charged', 'refunded', 'refundable', 'balance'],
      );
    });
  credits
    .command('balance')
    .description("show a user's balance, reserved and available credits")
    .requiredOption('--user <user>', 'id or email')
    .addHelpText('after', '\nExample:\n  keen-admin credits balance --user ana@example.com')
    .action(async (opts, cmd: Command) => {
      const r = await clientFor(cmd).credits.adminBalance(opts.user);
      printResult(
        globals(cmd),
        r,
        [{ user: r.user_id, balance: r.balance, reserved: r.reserved, available: r.available }],
        ['user', 'balance', 'reserved', 'available'],
      );
    });
  credits
    .command('history')
    .description("show a user's ledger, newest first")
    .requiredOption('--user <user>', 'id or email')
    .option('--limit <n>', `entries per page (1-${MAX_PAGE})`, parseLimit, 50)
    .option('--cursor <cursor>', 'continue with older entries (printed after a full page)')
    .addHelpText('after', '\nExample:\n  keen-admin credits history --user ana@example.com --limit 20')
    .action(async (opts, cmd: Command) => {
      const r = await clientFor(cmd).credits.adminTransactions({
        user_id: opts.user,
        limit: opts.limit,
        ...(opts.cursor === undefined ? {} : { cursor: opts.cursor }),
      });
      printResult(globals(cmd), r, r.transactions as unknown as Array<Record<string, unknown>>, HISTORY_COLUMNS);
      if (!globals(cmd).json && r.next_cursor) process.stderr.write(`more: --cursor ${r.next_cursor}\n`);
    });
  credits
    .command('verify')
    .description(
      'recompute every balance and tenant credit pool from the ledger; exits 1 on any mismatch (platform admins)',
    )
    .addHelpText('after', '\nExample:\n  keen-admin credits verify || alert "credit ledger mismatch"')
    .action(async (_opts, cmd: Command) => {
      // The daemon answers once at the end: on a terminal, the time so far.
      const progress = startProgress(
        ({ elapsed }) => `keen-admin: the daemon is checking every account and pool... ${elapsed.toFixed(0)} s`,
      );
      let r: CreditVerifyResponse;
      try {
        r = await clientFor(cmd, { timeout: VERIFY_TIMEOUT_MS }).credits.verify();
      } finally {
        progress.done();
      }
      if (globals(cmd).json) process.stdout.write(JSON.stringify(r) + '\n');
      if (r.ok) {
        if (!globals(cmd).json) process.stdout.write('ledger consistent\n');
        return;
      }
      for (const m of r.mismatches) process.stderr.write(describeMismatch(m) + '\n');
      throw new CliError(
        `the ledger has ${r.mismatches.length} mismatch${r.mismatches.length === 1 ? '' : 'es'}`,
        1,
        'LEDGER_MISMATCH',
      );
    });
  return credits;
}
