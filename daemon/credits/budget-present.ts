/**
 * A budget with its current use as the API shows it (schemas/api/Budget.json): decimal credits,
 * ISO 8601 times. Routes call it on what the services return; the same record names the budget
 * in a BUDGET_EXCEEDED error's details, a `budget.threshold` audit entry and webhook event.
 */
import type { Budget } from '../../schemas/types.gen.js';
import type { BudgetStatus } from './budgets.js';
import { formatCredits } from './money.js';

export function presentBudgetStatus(s: BudgetStatus): Budget {
  return {
    subject: s.subject,
    id: s.subjectId,
    amount: formatCredits(s.amount),
    period: s.period,
    used: formatCredits(s.used),
    remaining: formatCredits(s.remaining),
    period_start: s.period === 'total' ? null : new Date(s.windowStart).toISOString(),
    resets_at: s.resetsAt === null ? null : new Date(s.resetsAt).toISOString(),
    set_by: s.setBy,
  };
}
