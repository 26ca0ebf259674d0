import { Command, Option } from 'commander';
import { formatCredits, parseCredits } from '../../daemon/cli-shared.js';
import type { Budget, BudgetSubject, KeenClient } from '../../sdk/src/index.js';
import { clientFor, globals } from '../core/context.js';
import { CliError, printResult } from '../core/output.js';

export const BUDGET_COLUMNS = ['subject', 'id', 'amount', 'period', 'used', 'remaining', 'resets_at', 'set_by'];
const PERIODS = ['day', 'week', 'month', 'total'];

/** The options `keys create|update`, `users update` and `tenants update` share. */
export function addBudgetOptions(cmd: Command, removable = true): Command {
  cmd
    .option('--budget <credits>', 'at most this many credits per --budget-period (checked at every execute)')
    .addOption(
      new Option(
        '--budget-period <period>',
        'when the budget starts over: day, week (from Monday), month, or total (never)',
      ).choices(PERIODS),
    );
  if (removable) cmd.option('--no-budget', 'remove the budget');
  return cmd;
}

/** `{amount, period}` from the options, null for --no-budget, undefined when neither was given. */
export function budgetFromOptions(opts: {
  budget?: string | boolean;
  budgetPeriod?: string;
}): { amount: number; period: string } | null | undefined {
  if (opts.budget === false) {
    if (opts.budgetPeriod !== undefined) throw new CliError('--no-budget and --budget-period do not go together', 2);
    return null;
  }
  if (opts.budget === undefined || opts.budget === true) {
    if (opts.budgetPeriod !== undefined) throw new CliError('--budget-period needs --budget', 2);
    return undefined;
  }
  if (opts.budgetPeriod === undefined)
    throw new CliError('--budget needs --budget-period (day, week, month or total)', 2);
  let amount: number;
  try {
    amount = formatCredits(parseCredits(opts.budget, '--budget'));
  } catch (err) {
    throw new CliError(`${(err as Error).message} (got "${opts.budget}")`, 2);
  }
  return { amount, period: opts.budgetPeriod };
}

/** Sets (or with null removes) a budget as an administrator; returns it, or null once removed. */
export async function applyBudget(
  client: KeenClient,
  subject: BudgetSubject,
  id: string,
  budget: { amount: number; period: string } | null,
): Promise<Budget | null> {
  if (budget === null) {
    await client.budgets.remove(subject, id);
    return null;
  }
  return (await client.budgets.set(subject, id, budget as Parameters<KeenClient['budgets']['set']>[2])).budget;
}

/** `keen-admin users update` and `keen-admin tenants update`: today they set or remove a budget. */
export function budgetUpdateCommand(subject: 'user' | 'tenant', name: string, example: string): Command {
  return addBudgetOptions(
    new Command('update')
      .argument(`<${name}>`, subject === 'user' ? 'user id or email' : 'tenant id or name')
      .description(`change a ${subject}: set or remove its budget`)
      .addHelpText(
        'after',
        `\nExamples:\n  keen-admin ${name}s update ${example} --budget 200 --budget-period month\n  keen-admin ${name}s update ${example} --no-budget`,
      ),
  ).action(async (target: string, opts, cmd: Command) => {
    const budget = budgetFromOptions(opts);
    if (budget === undefined)
      throw new CliError('nothing to change: give --budget with --budget-period, or --no-budget', 2);
    const result = await applyBudget(clientFor(cmd), subject, target, budget);
    const out = globals(cmd);
    if (result)
      printResult(
        out,
        { success: true, budget: result },
        [result as unknown as Record<string, unknown>],
        BUDGET_COLUMNS,
      );
    else printResult(out, { success: true }, [], BUDGET_COLUMNS);
    if (!out.json && !result) process.stdout.write('budget removed\n');
  });
}

/** `keen-admin budgets ...` */
export function budgetsCommand(): Command {
  const budgets = new Command('budgets').description(
    'budgets of API keys, users and tenants, and what this period used',
  );
  budgets
    .command('list')
    .description('every budget in your reach (tenant admins: their tenant), with its use this period')
    .addOption(new Option('--subject <subject>', 'only these').choices(['api_key', 'user', 'tenant']))
    .addHelpText('after', '\nExample:\n  keen-admin budgets list --subject api_key')
    .action(async (opts, cmd: Command) => {
      const rows: Budget[] = [];
      for await (const b of clientFor(cmd).budgets.all({
        limit: 200,
        ...(opts.subject ? { subject: opts.subject } : {}),
      }))
        rows.push(b);
      printResult(
        globals(cmd),
        { success: true, budgets: rows },
        rows as unknown as Array<Record<string, unknown>>,
        BUDGET_COLUMNS,
      );
    });
  budgets
    .command('mine')
    .description('the budgets that apply to the credential in use')
    .addHelpText('after', '\nExample:\n  keen-admin budgets mine --json')
    .action(async (_opts, cmd: Command) => {
      const r = await clientFor(cmd).budgets.mine();
      printResult(globals(cmd), r, r.budgets as unknown as Array<Record<string, unknown>>, BUDGET_COLUMNS);
    });
  return budgets;
}
