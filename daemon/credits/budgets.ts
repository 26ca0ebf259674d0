/**
 * Budgets (docs/credits.md, "Budgets"): a cap on what an API key, a user or a
 * tenant may spend per period (`day`, `week` from Monday, `month`, or `total`),
 * on top of the balance.
 *
 * A budget counts what it *admitted* in a period: every reservation made in the
 * period holds its full amount against the window until it settles, then only
 * what it charged. `admit()` runs in the reservation's own transaction, after
 * the account lock, and locks each window row (FOR UPDATE on Postgres; SQLite
 * transactions are serialized), so parallel executes can never admit more than
 * the budget on either backend. The reservation records the windows it counted
 * against, and settlement gives the unused part back to those same windows (a
 * run that crosses midnight stays in the day it started).
 *
 * A window is created on first use, seeded from the reservations already made in
 * the period, so a budget set at noon counts the morning's spending.
 */
import { DateTime } from 'luxon';
import type { AuditLogger } from '../audit/types.js';
import { GatewayError } from '../errors.js';
import type { Queryable } from '../storage/database.js';
import type { BudgetRepository, BudgetRow } from '../storage/repos/budgets.js';
import type { BudgetPeriod, BudgetSubject } from '../storage/tables/credits.js';
import { presentBudgetStatus } from './budget-present.js';
import type { CreditActor } from './ledger.js';
import { formatCredits, subMicros, toMicros, type Micros } from './money.js';

export type { BudgetPeriod, BudgetSubject };
export const BUDGET_PERIODS: readonly BudgetPeriod[] = ['day', 'week', 'month', 'total'];
export const BUDGET_SUBJECTS: readonly BudgetSubject[] = ['api_key', 'user', 'tenant'];
/** Who may change or remove a budget: the role that set it or a higher one. */
export type BudgetSetter = 'owner' | 'tenant_admin' | 'platform_admin';
const SETTER_RANK: Record<BudgetSetter, number> = { owner: 0, tenant_admin: 1, platform_admin: 2 };

/** A window a reservation counted against: subject, id and the window's start. */
export interface BudgetWindowRef {
  t: BudgetSubject;
  id: string;
  w: number;
}

export interface Budget {
  subject: BudgetSubject;
  subjectId: string;
  tenantId: string | null;
  amount: Micros;
  period: BudgetPeriod;
  setBy: BudgetSetter;
  createdAt: number;
  updatedAt: number;
}

/** A budget with what the current period has used of it. */
export interface BudgetStatus extends Budget {
  windowStart: number;
  /** When the period ends and the budget is whole again; null for `total`. */
  resetsAt: number | null;
  used: Micros;
  remaining: Micros;
}

/** The subjects a spend is checked against: the key that spends (if any), its user, and the user's tenant. */
export interface Spender {
  apiKeyId: string | null;
  userId: string;
  tenantId: string | null;
}

/** A threshold crossed by an admission, announced once per window. */
export interface ThresholdCrossing {
  budget: BudgetStatus;
  threshold: number;
}

/** Period boundaries in one time zone (luxon: DST-correct; weeks start on Monday). */
export class BudgetCalendar {
  constructor(readonly timeZone = 'UTC') {}

  window(period: BudgetPeriod, now: number): { start: number; end: number | null } {
    if (period === 'total') return { start: 0, end: null };
    const start = DateTime.fromMillis(now, { zone: this.timeZone }).startOf(period);
    return { start: start.toMillis(), end: start.plus({ [`${period}s`]: 1 }).toMillis() };
  }
}

export interface BudgetBookOptions {
  /** The budgets' and windows' storage (built by the composition root). */
  repository: BudgetRepository;
  calendar: BudgetCalendar;
  audit: AuditLogger;
  /** Percentages announced once per window when crossed (config credits.budget_thresholds). */
  thresholds?: readonly number[];
  /** Called after the admitting transaction committed, once per crossing (the metric). */
  onThreshold?: (crossing: ThresholdCrossing) => void;
  /** Called in the admitting transaction, once per crossing (the `budget.threshold` webhook event). */
  onThresholdInTransaction?: (t: Queryable, crossing: ThresholdCrossing) => Promise<void>;
}

export class BudgetBook {
  readonly calendar: BudgetCalendar;
  private readonly repo: BudgetRepository;
  private readonly audit: AuditLogger;
  private readonly thresholds: number[];
  private readonly onThreshold: ((c: ThresholdCrossing) => void) | undefined;
  private readonly onThresholdInTransaction: ((t: Queryable, c: ThresholdCrossing) => Promise<void>) | undefined;

  constructor(options: BudgetBookOptions) {
    this.repo = options.repository;
    this.calendar = options.calendar;
    this.audit = options.audit;
    this.thresholds = [...(options.thresholds ?? [80, 100])].sort((a, b) => a - b);
    this.onThreshold = options.onThreshold;
    this.onThresholdInTransaction = options.onThresholdInTransaction;
  }

  /** The budget of one subject, if any. */
  async get(q: Queryable, subject: BudgetSubject, subjectId: string): Promise<Budget | undefined> {
    const row = await this.repo.find(q, subject, subjectId);
    return row ? toBudget(row) : undefined;
  }

  /** The budgets of the given subjects, with the current period's use (a plain read; no lock). */
  async statusOf(
    q: Queryable,
    subjects: ReadonlyArray<{ subject: BudgetSubject; id: string }>,
    now: number,
  ): Promise<BudgetStatus[]> {
    const rows = await this.rowsOf(q, subjects);
    const out: BudgetStatus[] = [];
    for (const row of rows) {
      const budget = toBudget(row);
      const { start, end } = this.calendar.window(budget.period, now);
      const w = await this.repo.windowUsed(q, { subject: budget.subject, subjectId: budget.subjectId, start });
      const used = w ? toMicros(Number(w.used)) : await this.seed(q, budget.subject, budget.subjectId, start, end);
      out.push(status(budget, start, end, used));
    }
    return out;
  }

  /** `statusOf` as a plain read, outside any transaction. */
  currentStatusOf(
    subjects: ReadonlyArray<{ subject: BudgetSubject; id: string }>,
    now: number,
  ): Promise<BudgetStatus[]> {
    return this.statusOf(this.repo.reads, subjects, now);
  }

  /** Budgets that a spend by `spender` is checked against, with their current use (a plain read). */
  statusForSpender(spender: Spender, now: number): Promise<BudgetStatus[]> {
    return this.currentStatusOf(subjectsOf(spender), now);
  }

  /**
   * Sets (creates or replaces) a subject's budget. Refused when the budget in
   * place was set by a higher role than `setBy`. Returns the budget and whether
   * one was replaced. The caller audits.
   */
  async set(
    q: Queryable,
    input: {
      subject: BudgetSubject;
      subjectId: string;
      tenantId: string | null;
      amount: Micros;
      period: BudgetPeriod;
      setBy: BudgetSetter;
    },
    now: number,
  ): Promise<{ budget: Budget; previous: Budget | undefined }> {
    const previous = await this.get(q, input.subject, input.subjectId);
    if (previous) assertMayChange(previous, input.setBy);
    const row = {
      subject_type: input.subject,
      subject_id: input.subjectId,
      tenant_id: input.tenantId,
      amount: input.amount,
      period: input.period,
      set_by: input.setBy,
      created_at: previous?.createdAt ?? now,
      updated_at: now,
    };
    if (previous) {
      const patch = { amount: row.amount, period: row.period, set_by: row.set_by, updated_at: now };
      await this.repo.update(q, input.subject, input.subjectId, patch);
    } else {
      await this.repo.insert(q, row);
    }
    return { budget: toBudget(row), previous };
  }

  /** Removes a subject's budget (and its windows). Returns the removed budget, if there was one. */
  async remove(
    q: Queryable,
    subject: BudgetSubject,
    subjectId: string,
    setBy: BudgetSetter,
  ): Promise<Budget | undefined> {
    const previous = await this.get(q, subject, subjectId);
    if (!previous) return undefined;
    assertMayChange(previous, setBy);
    await this.repo.remove(q, subject, subjectId);
    return previous;
  }

  /**
   * Counts `amount` against every budget of the spender, inside the reserving
   * transaction (after the account lock). Throws 402 BUDGET_EXCEEDED naming the
   * first budget that would be exceeded; nothing is counted then. Returns the
   * windows counted against, for the reservation to record, and a function to
   * call after commit that announces the thresholds crossed.
   */
  async admit(
    t: Queryable,
    spender: Spender,
    amount: Micros,
    now: number,
    actor: CreditActor,
  ): Promise<{ refs: BudgetWindowRef[]; announce: () => void }> {
    const rows = await this.rowsOf(t, subjectsOf(spender));
    if (rows.length === 0) return { refs: [], announce: noop };
    // Lock in a fixed order (key, user, tenant) so two admissions never wait on each other in a cycle.
    rows.sort((a, b) => BUDGET_SUBJECTS.indexOf(a.subject_type) - BUDGET_SUBJECTS.indexOf(b.subject_type));
    const windows: Array<{ budget: Budget; start: number; end: number | null; used: Micros; notified: number }> = [];
    for (const row of rows) {
      const budget = toBudget(row);
      const { start, end } = this.calendar.window(budget.period, now);
      const w = await this.lockWindow(t, budget, start, end, now);
      windows.push({ budget, start, end, ...w });
    }
    for (const w of windows) {
      if (w.used + amount > w.budget.amount) throw exceeded(status(w.budget, w.start, w.end, w.used), amount);
    }
    const crossings: ThresholdCrossing[] = [];
    for (const w of windows) {
      const used = toMicros(w.used + amount);
      const pct = Math.floor((used * 100) / w.budget.amount);
      const crossed = this.thresholds.filter((x) => x <= pct && x > w.notified).pop();
      const key = { subject: w.budget.subject, subjectId: w.budget.subjectId, start: w.start };
      await this.repo.setWindowUsed(t, key, used, now, crossed);
      if (crossed !== undefined) {
        const st = status(w.budget, w.start, w.end, used);
        crossings.push({ budget: st, threshold: crossed });
        await this.audit.record(
          {
            action: 'budget.threshold',
            outcome: 'success',
            actor,
            tenantId: w.budget.tenantId,
            target: { type: w.budget.subject, id: w.budget.subjectId },
            details: { threshold: crossed, ...presentBudgetStatus(st) },
          },
          t,
        );
        await this.onThresholdInTransaction?.(t, { budget: st, threshold: crossed });
      }
    }
    const refs = windows.map((w) => ({ t: w.budget.subject, id: w.budget.subjectId, w: w.start }));
    const announce =
      crossings.length === 0 || !this.onThreshold ? noop : () => crossings.forEach((c) => this.onThreshold!(c));
    return { refs, announce };
  }

  private async lockWindow(
    t: Queryable,
    budget: Budget,
    start: number,
    end: number | null,
    now: number,
  ): Promise<{ used: Micros; notified: number }> {
    const key = { subject: budget.subject, subjectId: budget.subjectId, start };
    let row = await this.repo.lockWindow(t, key);
    if (!row) {
      const used = await this.seed(t, budget.subject, budget.subjectId, start, end);
      await this.repo.createWindow(t, key, used, now);
      row = await this.repo.lockWindow(t, key);
      if (!row) throw new Error(`budget window of ${budget.subject} ${budget.subjectId} vanished under its lock`);
    }
    return { used: toMicros(Number(row.used)), notified: Number(row.notified_pct) };
  }

  /** What the subject's reservations made in [start, end) hold or charged: the window's use before it had a row. */
  private async seed(
    q: Queryable,
    subject: BudgetSubject,
    subjectId: string,
    start: number,
    end: number | null,
  ): Promise<Micros> {
    return toMicros(await this.repo.reservedSince(q, subject, subjectId, start, end));
  }

  private async rowsOf(
    q: Queryable,
    subjects: ReadonlyArray<{ subject: BudgetSubject; id: string }>,
  ): Promise<BudgetRow[]> {
    return this.repo.findMany(q, subjects);
  }
}

/**
 * Gives back to the windows a reservation counted against what it did not
 * charge (settlement, release, expiry), in the settling transaction. A window
 * whose budget was removed meanwhile is simply gone.
 */
export async function giveBackToBudgets(
  repo: BudgetRepository,
  t: Queryable,
  refsJson: string | null,
  unused: Micros,
  now: number,
): Promise<void> {
  if (!refsJson || unused <= 0) return;
  const refs = JSON.parse(refsJson) as BudgetWindowRef[];
  for (const r of refs) await repo.giveBack(t, { subject: r.t, subjectId: r.id, start: r.w }, unused, now);
}

export function subjectsOf(spender: Spender): Array<{ subject: BudgetSubject; id: string }> {
  const out: Array<{ subject: BudgetSubject; id: string }> = [];
  if (spender.apiKeyId) out.push({ subject: 'api_key', id: spender.apiKeyId });
  out.push({ subject: 'user', id: spender.userId });
  if (spender.tenantId) out.push({ subject: 'tenant', id: spender.tenantId });
  return out;
}

function status(budget: Budget, start: number, end: number | null, used: Micros): BudgetStatus {
  const remaining = used >= budget.amount ? toMicros(0) : subMicros(budget.amount, used);
  return { ...budget, windowStart: start, resetsAt: end, used, remaining };
}

function exceeded(s: BudgetStatus, required: Micros): GatewayError {
  const whose = s.subject === 'api_key' ? 'API key' : s.subject;
  const when = s.resetsAt === null ? 'it does not reset' : `it resets at ${new Date(s.resetsAt).toISOString()}`;
  return new GatewayError(
    'BUDGET_EXCEEDED',
    `the ${s.period === 'total' ? 'total' : `${s.period}ly`.replace('dayly', 'daily')} budget of this ${whose} would be exceeded; ${when}`,
    {
      details: { budget: presentBudgetStatus(s), required: formatCredits(required) },
    },
  );
}

function assertMayChange(previous: Budget, setBy: BudgetSetter): void {
  if (SETTER_RANK[setBy] < SETTER_RANK[previous.setBy]) {
    throw new GatewayError(
      'FORBIDDEN',
      `this budget was set by a ${previous.setBy.replace('_', ' ')}; only they can change or remove it`,
    );
  }
}

function toBudget(row: BudgetRow): Budget {
  return {
    subject: row.subject_type,
    subjectId: row.subject_id,
    tenantId: row.tenant_id,
    amount: toMicros(Number(row.amount)),
    period: row.period,
    setBy: row.set_by,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

function noop(): void {}
