/**
 * Setting, removing and reading budgets (docs/credits.md, "Budgets"), with the
 * policy of who may touch which:
 *
 * - an API key's budget: its owner (a self-imposed cap), or an administrator
 *   who reaches the key (tenant admins: keys of their tenant);
 * - a user's budget: administrators who reach the user;
 * - a tenant's budget: platform administrators.
 *
 * A budget set by an administrator cannot be lifted or raised by someone of a
 * lower role (a key's owner cannot remove the cap a tenant admin put on it).
 */
import { actorOf, auditContext } from '../audit/actor.js';
import type { AuditLogger } from '../audit/types.js';
import type { ClientInfo } from '../auth/auth-service.js';
import type { Principal } from '../auth/principal.js';
import type { Clock } from '../clock.js';
import { GatewayError, invalidField, notFound } from '../errors.js';
import { isId } from '../ids.js';
import { assertPlatformAdmin, effectiveRole, reachFilter, reachFor, type Reach } from '../policies/index.js';
import type { Database, Queryable } from '../storage/database.js';
import type { BudgetRepository } from '../storage/repos/budgets.js';
import type { CredentialRepository } from '../storage/repos/credentials.js';
import type { UserRepository } from '../storage/repos/users.js';
import {
  BUDGET_PERIODS,
  type Budget,
  type BudgetBook,
  type BudgetPeriod,
  type BudgetSetter,
  type BudgetStatus,
  type BudgetSubject,
} from './budgets.js';
import { formatCredits, parseCredits } from './money.js';

/** The body of every budget write: `{amount, period}`. */
export interface BudgetInput {
  amount?: unknown;
  period?: unknown;
}

export interface BudgetTarget {
  subject: BudgetSubject;
  id: string;
  tenantId: string | null;
}

export interface BudgetAdminDeps {
  database: Database;
  clock: Clock;
  budgets: BudgetBook;
  audit: AuditLogger;
  /** The repositories it reads, built by the composition root. */
  repositories: { budgets: BudgetRepository; credentials: CredentialRepository; users: UserRepository };
}

export class BudgetAdmin {
  private readonly creds: CredentialRepository;
  private readonly users: UserRepository;
  private readonly repo: BudgetRepository;

  constructor(private readonly deps: BudgetAdminDeps) {
    this.creds = deps.repositories.credentials;
    this.users = deps.repositories.users;
    this.repo = deps.repositories.budgets;
  }

  /** Budgets that apply to the caller: its user's, its tenant's, and each of its own keys'. */
  async mine(p: Principal): Promise<BudgetStatus[]> {
    const keys = await this.creds.listApiKeys(reachFor(p, 'self'), 1000);
    const subjects = [
      { subject: 'user' as const, id: p.userId },
      ...(p.tenantId ? [{ subject: 'tenant' as const, id: p.tenantId }] : []),
      ...keys.map((k) => ({ subject: 'api_key' as const, id: k.id })),
    ];
    return this.deps.budgets.currentStatusOf(subjects, this.deps.clock.now());
  }

  /** Every budget an administrator reaches (tenant admins: their tenant's), in (subject, id) order. */
  async list(
    p: Principal,
    options: { limit: number; cursor?: string | null; subject?: string },
  ): Promise<{ budgets: BudgetStatus[]; next: string | null }> {
    const reach = reachFor(p, 'admin');
    const filter = reachFilter(reach);
    const rows = await this.repo.listSubjects({
      limit: options.limit + 1,
      ...(filter ? { tenantId: filter.value } : {}),
      ...(options.subject !== undefined ? { subject: subjectOf(options.subject) } : {}),
      ...(options.cursor ? { after: decodeCursor(options.cursor) } : {}),
    });
    const page = rows.slice(0, options.limit);
    const statuses = await this.deps.budgets.currentStatusOf(
      page.map((r) => ({ subject: r.subject_type, id: r.subject_id })),
      this.deps.clock.now(),
    );
    statuses.sort((a, b) =>
      a.subject === b.subject ? (a.subjectId < b.subjectId ? -1 : 1) : a.subject < b.subject ? -1 : 1,
    );
    const last = page[page.length - 1];
    return {
      budgets: statuses,
      next: rows.length > options.limit && last ? encodeCursor(last.subject_type, last.subject_id) : null,
    };
  }

  /** Resolves the subject a route names, within the caller's reach; NOT_FOUND when out of it. */
  async target(p: Principal, subject: BudgetSubject, idOrEmail: string, asAdmin: boolean): Promise<BudgetTarget> {
    if (subject === 'tenant') {
      assertPlatformAdmin(p, 'set tenant budgets');
      const tenant = isId(idOrEmail, 'ten')
        ? await this.users.findTenant(idOrEmail)
        : await this.users.findTenantByName(idOrEmail);
      if (!tenant) throw notFound('tenant');
      return { subject, id: tenant.id, tenantId: tenant.id };
    }
    const reach: Reach = reachFor(p, asAdmin ? 'admin' : 'self');
    if (subject === 'api_key') {
      const key = isId(idOrEmail, 'key') ? await this.creds.findApiKey(idOrEmail, reach) : undefined;
      if (!key) throw notFound('API key');
      return { subject, id: key.id, tenantId: key.tenant_id };
    }
    const user = isId(idOrEmail, 'usr')
      ? await this.users.findById(idOrEmail, reach)
      : idOrEmail.includes('@')
        ? await this.users.findByEmail(idOrEmail.normalize('NFKC').trim().toLowerCase(), reach)
        : undefined;
    if (!user) throw notFound('user');
    return { subject, id: user.id, tenantId: user.tenant_id };
  }

  /** Sets the target's budget (in `trx` when given: key creation sets one with the key). */
  async set(
    p: Principal | null,
    target: BudgetTarget,
    input: BudgetInput,
    client?: ClientInfo,
    trx?: Queryable,
  ): Promise<BudgetStatus> {
    const { amount, period } = parseBudget(input);
    const setBy = setterOf(p);
    const work = async (t: Queryable) => {
      const now = this.deps.clock.now();
      const { budget, previous } = await this.deps.budgets.set(
        t,
        { subject: target.subject, subjectId: target.id, tenantId: target.tenantId, amount, period, setBy },
        now,
      );
      await this.deps.audit.record(
        {
          action: 'budget.set',
          outcome: 'success',
          actor: actorOf(p),
          tenantId: target.tenantId,
          target: { type: target.subject, id: target.id },
          ...auditContext(client),
          details: {
            amount: formatCredits(budget.amount),
            period: budget.period,
            ...(previous ? { previous: { amount: formatCredits(previous.amount), period: previous.period } } : {}),
          },
        },
        t,
      );
      const [st] = await this.deps.budgets.statusOf(t, [{ subject: target.subject, id: target.id }], now);
      return st!;
    };
    return trx ? work(trx) : this.deps.database.transaction(work);
  }

  /** Removes the target's budget; NOT_FOUND when it has none. */
  async remove(p: Principal, target: BudgetTarget, client?: ClientInfo, trx?: Queryable): Promise<Budget> {
    const work = async (t: Queryable) => {
      const removed = await this.deps.budgets.remove(t, target.subject, target.id, setterOf(p));
      if (!removed) throw notFound('budget');
      await this.deps.audit.record(
        {
          action: 'budget.remove',
          outcome: 'success',
          actor: actorOf(p),
          tenantId: target.tenantId,
          target: { type: target.subject, id: target.id },
          ...auditContext(client),
          details: { amount: formatCredits(removed.amount), period: removed.period },
        },
        t,
      );
      return removed;
    };
    return trx ? work(trx) : this.deps.database.transaction(work);
  }

  /** The budgets of these API keys with their current use, by key id (key lists). */
  async ofKeys(keyIds: string[]): Promise<Map<string, BudgetStatus>> {
    const out = new Map<string, BudgetStatus>();
    if (keyIds.length === 0) return out;
    const subjects = keyIds.map((id) => ({ subject: 'api_key' as const, id }));
    const statuses = await this.deps.budgets.currentStatusOf(subjects, this.deps.clock.now());
    for (const s of statuses) out.set(s.subjectId, s);
    return out;
  }

  /** The target's budget with its current use, or null. */
  async statusOf(target: BudgetTarget): Promise<BudgetStatus | null> {
    const subject = { subject: target.subject, id: target.id };
    const [st] = await this.deps.budgets.currentStatusOf([subject], this.deps.clock.now());
    return st ?? null;
  }
}

/** Validates `{amount, period}`: a positive amount of credits and one of the periods. */
export function parseBudget(input: BudgetInput): { amount: ReturnType<typeof parseCredits>; period: BudgetPeriod } {
  if (input === null || typeof input !== 'object') {
    throw invalidField('budget must be an object {amount, period}', [
      { field: 'budget', message: 'must be an object' },
    ]);
  }
  const amount = parseCredits(input.amount, 'amount');
  if (typeof input.period !== 'string' || !BUDGET_PERIODS.includes(input.period as BudgetPeriod)) {
    throw invalidField(`period must be one of ${BUDGET_PERIODS.join(', ')}`, [
      { field: 'period', message: `one of ${BUDGET_PERIODS.join(', ')}` },
    ]);
  }
  return { amount, period: input.period as BudgetPeriod };
}

function setterOf(p: Principal | null): BudgetSetter {
  if (p === null) return 'platform_admin';
  const role = effectiveRole(p);
  return role === 'member' ? 'owner' : role;
}

function subjectOf(value: string): BudgetSubject {
  if (value === 'api_key' || value === 'user' || value === 'tenant') return value;
  throw invalidField('subject must be api_key, user or tenant', [
    { field: 'subject', message: 'one of api_key, user, tenant' },
  ]);
}

function encodeCursor(subject: string, id: string): string {
  return Buffer.from(JSON.stringify([subject, id])).toString('base64url');
}

function decodeCursor(cursor: string): [BudgetSubject, string] {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(v) && v.length === 2 && typeof v[1] === 'string') return [subjectOf(String(v[0])), v[1]];
  } catch {
    // falls through
  }
  throw new GatewayError('INVALID_FIELD', 'cursor is not valid', {
    details: [{ field: 'cursor', message: 'not a cursor from a previous page' }],
  });
}
