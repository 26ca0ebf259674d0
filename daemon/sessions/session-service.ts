import type { ExecuteRequest, ExecuteResponse } from '../../schemas/types.gen.js';
import { buildPureRequest, sanitizeVision } from '../agents/pure-request.js';
import type { BudgetStatus } from '../credits/budgets.js';
import { actorOf, auditContext } from '../audit/actor.js';
import type { AuditLogger } from '../audit/types.js';
import type { ClientInfo } from '../auth/auth-service.js';
import type { Principal } from '../auth/principal.js';
import type { Clock } from '../clock.js';
import type { ResolvedConfig } from '../config/load.js';
import type { CostEstimator } from '../credits/estimator.js';
import type { CreditLedger } from '../credits/ledger.js';
import type { IdempotencyStore } from '../idempotency/store.js';
import { formatCredits, parseCredits, type Micros } from '../credits/money.js';
import { GatewayError, invalidField, notFound } from '../errors.js';
import { isId, newId } from '../ids.js';
import type { Database, Queryable } from '../storage/database.js';
import { reachFor } from '../policies/index.js';
import {
  FINAL_STATUSES,
  type SessionEventRow,
  type SessionRepository,
  type SessionRow,
} from '../storage/repos/sessions.js';
import type { SessionStatus } from '../storage/tables/sessions.js';
import type { SessionMetrics } from './metrics.js';
import type { SessionSupervisor } from './supervisor.js';

/** Execute refusals that are audited (denied) and counted by outcome. */
const DENIALS: Partial<
  Record<string, { outcome: string; action: 'concurrency.denied' | 'credits.insufficient' | 'budget.exceeded' }>
> = {
  CONCURRENCY_LIMIT: { outcome: 'concurrency_limit', action: 'concurrency.denied' },
  INSUFFICIENT_CREDITS: { outcome: 'insufficient_credits', action: 'credits.insufficient' },
  BUDGET_EXCEEDED: { outcome: 'budget_exceeded', action: 'budget.exceeded' },
};

/** The execute body after schema validation (docs/API.md). */
export type ExecuteInput = ExecuteRequest;

/** What execute answers, whole (and what a retry with the same Idempotency-Key replays). */
export type ExecuteBody = ExecuteResponse;

/** A page of sessions, newest first; `nextCursor` continues it. */
export interface SessionPage {
  sessions: SessionRow[];
  nextCursor: string | null;
}

/** A limit that would refuse an execute now (POST /v1/agents/quote); amounts in micros. */
export type AdmissionReason =
  | { limit: 'concurrent_sessions'; current: number; max: number; retryAfterSeconds: number }
  | { limit: 'credits'; current: Micros; max: Micros }
  | { limit: 'budget'; current: Micros; max: Micros; budget: BudgetStatus; retryAfterSeconds: number | null };

/** What execute would decide now, and why: the cost, the hold, the balance and the budgets in play. */
export interface Quote {
  estimate: Micros;
  reservation: Micros;
  available: Micros;
  budgets: BudgetStatus[];
  /** Empty when execute would be admitted. */
  reasons: AdmissionReason[];
}

/** Stored events of a session after a seq, with where the session is now. */
export interface SessionEvents {
  events: SessionEventRow[];
  lastSeq: number;
  status: SessionStatus;
}

export interface SessionServiceDeps {
  /** Opens the admission transaction; the rows go through `sessions` (built once by the container). */
  database: Database;
  sessions: SessionRepository;
  idempotency: IdempotencyStore;
  clock: Clock;
  config: ResolvedConfig;
  ledger: CreditLedger;
  estimator: CostEstimator;
  supervisor: SessionSupervisor;
  audit: AuditLogger;
  metrics: SessionMetrics;
  instanceId: string;
  /**
   * The answer an execute stores with its Idempotency-Key and answers (the edge's presenter,
   * which knows the public URL): built in the admission transaction, replayed as it is.
   */
  presentStarted: (row: SessionRow, requestId: string) => ExecuteBody;
  /** Checks a webhook URL (scheme, host, address policy); throws INVALID_FIELD. */
  validateWebhookUrl: (url: string) => void;
  /** In the execute's transaction, after the session row: `session.started` for registered webhook endpoints. */
  onSessionStart?: (session: SessionRow, trx: Queryable) => Promise<void>;
}

const CONCURRENCY_RETRY_AFTER_S = 5;

/**
 * Execute and quote, and reading and cancelling sessions. Execute's admission
 * is one transaction: lock the user, count running sessions against the tier,
 * reserve the credits, insert the session. Two requests racing for the last
 * slot or the last credit: exactly one wins, on SQLite and on Postgres.
 */
export class SessionService {
  private readonly sessions: SessionRepository;

  constructor(private readonly deps: SessionServiceDeps) {
    this.sessions = deps.sessions;
  }

  private prepare(principal: Principal, input: ExecuteInput) {
    const vision = sanitizeVision(input.vision);
    if ([...vision].length < 10)
      throw invalidField('vision must be at least 10 characters after removing control characters', [
        { field: 'vision', message: 'must be at least 10 characters' },
      ]);
    if ([...vision].length > 32_000)
      throw invalidField('vision must be at most 32,000 characters', [
        { field: 'vision', message: 'must be at most 32000 characters' },
      ]);
    const o = input.options ?? {};
    if (o.costBudget !== undefined) parseCredits(o.costBudget, 'options.costBudget');
    if (input.webhook_url !== undefined) this.deps.validateWebhookUrl(input.webhook_url);
    const tier = this.deps.config.tiers[principal.tier];
    const request = buildPureRequest({
      vision,
      workingDirectory: '',
      options: {
        ...(o.maxIterations !== undefined ? { maxIterations: o.maxIterations } : {}),
        ...(o.enableWebSearch !== undefined ? { enableWebSearch: o.enableWebSearch } : {}),
        ...(o.enableStreaming !== undefined ? { enableStreaming: o.enableStreaming } : {}),
        ...(o.showProgress !== undefined ? { showProgress: o.showProgress } : {}),
      },
      maxAgents: tier.max_agents_per_session,
    });
    const costInput = {
      vision,
      options: {
        maxIterations: request.options.maxIterations,
        enableWebSearch: request.options.enableWebSearch,
        ...(o.costBudget !== undefined ? { costBudget: o.costBudget } : {}),
      },
    };
    return {
      vision,
      request,
      tier,
      estimate: this.deps.estimator.estimate(costInput),
      reservation: this.deps.estimator.reservationFor(costInput),
    };
  }

  /** POST /v1/agents/quote: what execute would decide now, and why; no side effects. */
  async quote(principal: Principal, input: ExecuteInput): Promise<Quote> {
    const { estimate, reservation, tier } = this.prepare(principal, input);
    const [balance, running] = await Promise.all([
      this.deps.ledger.balance(principal.userId),
      this.sessions.countRunning(principal.userId),
    ]);
    const reasons: AdmissionReason[] = [];
    if (running >= tier.max_concurrent_sessions) {
      const max = tier.max_concurrent_sessions;
      const retryAfterSeconds = CONCURRENCY_RETRY_AFTER_S;
      reasons.push({ limit: 'concurrent_sessions', current: running, max, retryAfterSeconds });
    }
    if (balance.available < reservation) {
      reasons.push({ limit: 'credits', current: balance.available, max: reservation });
    }
    const budgets = this.deps.ledger.budgets
      ? await this.deps.ledger.budgets.statusForSpender(
          { apiKeyId: principal.apiKeyId ?? null, userId: principal.userId, tenantId: principal.tenantId },
          this.deps.clock.now(),
        )
      : [];
    for (const b of budgets) {
      if (b.remaining < reservation) {
        const now = this.deps.clock.now();
        const retryAfterSeconds = b.resetsAt === null ? null : Math.max(1, Math.ceil((b.resetsAt - now) / 1000));
        reasons.push({ limit: 'budget', current: b.remaining, max: reservation, budget: b, retryAfterSeconds });
      }
    }
    return { estimate, reservation, available: balance.available, budgets, reasons };
  }

  /**
   * POST /v1/agents/execute. With `idempotency`, the key's claim, the session,
   * its reservation and the stored response are one transaction: a committed
   * execute is always replayed, an uncommitted one never leaves a claim.
   */
  async execute(
    principal: Principal,
    input: ExecuteInput,
    client: ClientInfo,
    idempotency?: { key: string; requestHash: string },
  ): Promise<{ body: ExecuteBody; replayed: boolean }> {
    let prepared: ReturnType<SessionService['prepare']>;
    try {
      prepared = this.prepare(principal, input);
    } catch (err) {
      this.deps.metrics.executes.inc({ outcome: 'invalid' });
      throw err;
    }
    const { vision, request, tier, estimate, reservation } = prepared;
    const now = this.deps.clock.now();
    const sessionId = newId('ses', now);
    if (idempotency) await this.deps.idempotency.maybePrune();
    let started: { row: SessionRow; body: ExecuteBody } | { replay: ExecuteBody };
    try {
      started = await this.deps.database.transaction(async (trx) => {
        if (idempotency) {
          const earlier = await this.deps.idempotency.claimIn<ExecuteBody>(
            trx,
            principal.userId,
            idempotency.key,
            idempotency.requestHash,
          );
          if (earlier) return { replay: earlier.body };
        }
        const repo = this.sessions.with(trx);
        await repo.lockUser(principal.userId, this.deps.database.dialect);
        const running = await repo.countRunning(principal.userId);
        if (running >= tier.max_concurrent_sessions) {
          throw new GatewayError(
            'CONCURRENCY_LIMIT',
            `your tier allows ${tier.max_concurrent_sessions} concurrent sessions; ${running} are running`,
            {
              headers: { 'Retry-After': String(CONCURRENCY_RETRY_AFTER_S) },
              details: {
                limit: 'concurrent_sessions',
                current: running,
                max: tier.max_concurrent_sessions,
                retry_after: CONCURRENCY_RETRY_AFTER_S,
              },
            },
          );
        }
        const held = await this.deps.ledger.reserve(
          {
            userId: principal.userId,
            amount: reservation,
            ttlMs: this.deps.config.credits.reservation_ttl_seconds * 1000,
            sessionId,
            actor: actorOf(principal),
            apiKeyId: principal.apiKeyId ?? null,
          },
          trx,
        );
        const r: SessionRow = {
          id: sessionId,
          user_id: principal.userId,
          tenant_id: principal.tenantId,
          status: 'running',
          current_phase: null,
          vision,
          options: JSON.stringify(request.options),
          webhook_url: input.webhook_url ?? null,
          reservation_id: held.id,
          reserved: held.amount,
          estimated_cost: estimate,
          cost_so_far: 0,
          final_cost: null,
          input_tokens: 0,
          output_tokens: 0,
          web_searches: 0,
          owner: this.deps.instanceId,
          last_seq: 0,
          cancel_requested_at: null,
          end_reason: null,
          summary: null,
          request_id: client.requestId,
          sandboxed: this.deps.supervisor.sandboxed ? 1 : 0,
          lease_epoch: 1,
          api_key_id: principal.apiKeyId ?? null,
          created_at: now,
          updated_at: now,
          ended_at: null,
        };
        await repo.insert(r);
        await this.deps.onSessionStart?.(r, trx);
        await this.deps.audit.record(
          {
            action: 'session.execute',
            outcome: 'success',
            actor: actorOf(principal),
            tenantId: principal.tenantId,
            target: { type: 'session', id: sessionId },
            ...auditContext(client),
            details: {
              user_id: principal.userId,
              reserved: formatCredits(held.amount),
              vision_chars: [...vision].length,
            },
          },
          trx,
        );
        const body = this.deps.presentStarted(r, client.requestId);
        if (idempotency)
          await this.deps.idempotency.completeIn(trx, principal.userId, idempotency.key, { status: 200, body });
        return { row: r, body };
      });
    } catch (err) {
      if (err instanceof GatewayError) {
        const outcome = DENIALS[err.code]?.outcome ?? 'refused';
        this.deps.metrics.executes.inc({ outcome });
        const denial = DENIALS[err.code];
        if (denial) {
          await this.deps.audit.record({
            action: denial.action,
            outcome: 'denied',
            actor: actorOf(principal),
            tenantId: principal.tenantId,
            ip: client.ip,
            requestId: client.requestId,
            details: err.details as Record<string, unknown>,
          });
        }
      }
      throw err;
    }
    if ('replay' in started) return { body: started.replay, replayed: true };
    this.deps.metrics.executes.inc({ outcome: 'accepted' });
    void this.deps.supervisor.launch(started.row, request);
    return { body: started.body, replayed: false };
  }

  private async find(principal: Principal, id: string, asAdmin: boolean): Promise<SessionRow> {
    const row = isId(id, 'ses')
      ? await this.sessions.find(id, reachFor(principal, asAdmin ? 'admin' : 'user'))
      : undefined;
    if (!row) {
      await this.deps.audit.record({
        action: 'access.not_found',
        outcome: 'denied',
        actor: actorOf(principal),
        tenantId: principal.tenantId,
        target: { type: 'session', id: id.slice(0, 64) },
      });
      throw notFound('session');
    }
    return row;
  }

  async get(principal: Principal, id: string, asAdmin = false): Promise<SessionRow> {
    return this.find(principal, id, asAdmin);
  }

  async list(
    principal: Principal,
    options: { limit: number; cursor?: string | null; status?: string; userId?: string },
    asAdmin = false,
  ): Promise<SessionPage> {
    const status = options.status as SessionStatus | undefined;
    if (status && status !== 'running' && !FINAL_STATUSES.includes(status))
      throw invalidField('status is not a session status', [{ field: 'status', message: 'unknown status' }]);
    const rows = await this.sessions.list(reachFor(principal, asAdmin ? 'admin' : 'user'), {
      limit: options.limit + 1,
      before: options.cursor ?? null,
      ...(status ? { status } : {}),
      ...(options.userId ? { userId: options.userId } : {}),
    });
    const page = rows.slice(0, options.limit);
    return { sessions: page, nextCursor: rows.length > options.limit ? page[page.length - 1]!.id : null };
  }

  async events(principal: Principal, id: string, after: number, limit: number): Promise<SessionEvents> {
    const row = await this.find(principal, id, false);
    return { events: await this.sessions.events(row.id, after, limit), lastSeq: row.last_seq, status: row.status };
  }

  /** Stops the agent (on whichever daemon runs it), charges what it used, releases the rest. */
  async cancel(principal: Principal, id: string, client: ClientInfo, asAdmin = false): Promise<SessionRow> {
    const row = await this.find(principal, id, asAdmin);
    if (row.status !== 'running') throw new GatewayError('INVALID_STATE', `session is ${row.status}`);
    await this.sessions.update(row.id, { cancel_requested_at: this.deps.clock.now() });
    await this.deps.audit.record({
      action: 'session.cancel_requested',
      outcome: 'success',
      actor: actorOf(principal, { asAdmin }),
      tenantId: row.tenant_id,
      target: { type: 'session', id: row.id },
      ip: client.ip,
      requestId: client.requestId,
    });
    if (this.deps.supervisor.cancelLocal(row.id)) await this.deps.supervisor.settled(row.id);
    return this.get(principal, id, asAdmin);
  }
}
