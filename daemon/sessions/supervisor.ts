import type { AgentEvent, AgentExit, AgentRun, AgentRunner, PureAgentRequest } from '../agents/types.js';
import type { WorkspaceManager } from '../agents/workspaces.js';
import type { AuditLogger } from '../audit/types.js';
import type { Clock } from '../clock.js';
import type { CostEstimator } from '../credits/estimator.js';
import type { CreditLedger, Reservation } from '../credits/ledger.js';
import { formatCredits, type Micros } from '../credits/money.js';
import { GatewayError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Database, Queryable } from '../storage/database.js';
import { SessionRepository, type SessionRow } from '../storage/repos/sessions.js';
import type { SessionStatus } from '../storage/tables/sessions.js';
import type { BusEnvelope, EventBus } from './bus.js';
import { presentEvent } from './presenters.js';
import type { SessionMetrics } from './metrics.js';

/** Called in the finalizing transaction, so a webhook commits with the session's end. */
export type OnSessionEnd = (session: SessionRow, finalEvent: BusEnvelope['event'], trx: Queryable) => Promise<void>;

interface LiveSession {
  row: SessionRow;
  seq: number;
  cost: number;
  input: number;
  output: number;
  searches: number;
  result: { status: 'completed' | 'failed'; summary: string } | null;
  stopReason: 'cancelled' | 'budget' | 'shutdown' | null;
  run: AgentRun | null;
  heartbeat: NodeJS.Timeout | null;
  /** Events are stored one after another, in the agent's order. */
  chain: Promise<void>;
  finished: Promise<void>;
}

export interface SupervisorDeps {
  database: Database;
  clock: Clock;
  logger: Logger;
  ledger: CreditLedger;
  estimator: CostEstimator;
  runner: AgentRunner;
  workspaces: WorkspaceManager;
  bus: EventBus;
  audit: AuditLogger;
  metrics: SessionMetrics;
  /** This daemon's stable identity: sessions it owned and lost are found by it after a restart. */
  instanceId: string;
  reservationTtlMs: number;
  onSessionEnd?: OnSessionEnd;
}

const END_ACTION: Record<SessionStatus, string> = {
  running: 'session.execute',
  completed: 'session.complete',
  failed: 'session.fail',
  cancelled: 'session.cancel',
  budget_exhausted: 'session.budget_exhausted',
  timed_out: 'session.timeout',
  interrupted: 'session.interrupt',
};

/**
 * Runs the agents of the sessions this daemon started: stores each event with
 * the next seq and publishes it, prices usage as it arrives, stops an agent
 * whose cost reaches its reservation, keeps the reservation's lease alive, and
 * finalizes every session exactly once in one transaction (charge what was
 * used, release the rest, final status, audit entry, webhook).
 */
export class SessionSupervisor {
  private readonly live = new Map<string, LiveSession>();
  private readonly sessions: SessionRepository;
  private stopping = false;

  constructor(private readonly deps: SupervisorDeps) {
    this.sessions = new SessionRepository(deps.database.db);
  }

  /** Whether the agents this supervisor starts run sandboxed (recorded on each session at execute). */
  get sandboxed(): boolean {
    return this.deps.runner.sandboxed === true;
  }

  get runningCount(): number {
    return this.live.size;
  }

  /** Starts the agent of a session whose row and reservation are committed. Never throws: a failure ends the session. */
  launch(row: SessionRow, request: Omit<PureAgentRequest, 'workingDirectory'>): Promise<void> {
    let resolveFinished!: () => void;
    const live: LiveSession = {
      row,
      seq: row.last_seq,
      cost: 0,
      input: 0,
      output: 0,
      searches: 0,
      result: null,
      stopReason: null,
      run: null,
      heartbeat: null,
      chain: Promise.resolve(),
      finished: new Promise<void>((r) => (resolveFinished = r)),
    };
    this.live.set(row.id, live);
    this.deps.metrics.running.inc();
    void (async () => {
      let exit: AgentExit;
      try {
        await this.emit(live, 'session.status', { status: 'running' });
        const workingDirectory = await this.deps.workspaces.create(row.id);
        live.heartbeat = setInterval(() => void this.beat(live), Math.max(500, Math.floor(this.deps.reservationTtlMs / 3)));
        live.heartbeat.unref();
        live.run = this.deps.runner.start(row.id, { ...request, workingDirectory }, {
          onEvent: (e) => this.enqueue(live, () => this.onAgentEvent(live, e)),
          onInvalidLine: () => this.deps.metrics.invalidLines.inc(),
        });
        if (this.stopping || live.stopReason) await live.run.stop(live.stopReason ?? 'shutdown');
        exit = await live.run.done;
      } catch (err) {
        this.deps.logger.error({ err, session_id: row.id }, 'agent could not be started');
        exit = { reason: 'spawn_failed', exitCode: null, signal: null, result: null, invalidLines: 0, stopReason: null };
      }
      await live.chain;
      try {
        await this.finalize(live, exit);
      } catch (err) {
        // The reservation's lease runs out and the reaper settles it: nothing stays held.
        this.deps.logger.error({ err, session_id: row.id }, 'finalizing a session failed; the reaper will settle it');
      } finally {
        if (live.heartbeat) clearInterval(live.heartbeat);
        this.live.delete(row.id);
        this.deps.metrics.running.dec();
        resolveFinished();
      }
    })();
    return live.finished;
  }

  private enqueue(live: LiveSession, fn: () => Promise<void>): Promise<void> {
    live.chain = live.chain.then(fn).catch((err: unknown) => {
      this.deps.logger.error({ err, session_id: live.row.id }, 'storing an agent event failed');
    });
    return live.chain;
  }

  /** Stores an event with the next seq, then publishes it. */
  private async emit(live: LiveSession, type: string, data: Record<string, unknown>, trx?: Queryable): Promise<BusEnvelope['event']> {
    const ts = this.deps.clock.now();
    live.seq += 1;
    const row = { session_id: live.row.id, seq: live.seq, ts, type, data: JSON.stringify(data) };
    await this.sessions.with(trx ?? this.deps.database.db).appendEvent(row);
    const event = presentEvent(row);
    if (!trx) await this.publish(live, event);
    return event;
  }

  private async publish(live: LiveSession, event: BusEnvelope['event']): Promise<void> {
    try {
      await this.deps.bus.publish({ userId: live.row.user_id, tenantId: live.row.tenant_id, event });
    } catch (err) {
      // Stored already: a subscriber replays it from the database.
      this.deps.logger.warn({ err: { message: (err as Error).message }, session_id: live.row.id }, 'publishing an event failed');
    }
  }

  private async onAgentEvent(live: LiveSession, e: AgentEvent): Promise<void> {
    switch (e.type) {
      case 'phase':
        await this.sessions.update(live.row.id, { current_phase: e.phase, updated_at: this.deps.clock.now() });
        await this.emit(live, 'agent.phase', { phase: e.phase });
        return;
      case 'progress':
        await this.emit(live, 'agent.progress', { message: e.message, ...(e.percent === undefined ? {} : { percent: e.percent }) });
        return;
      case 'log':
        await this.emit(live, 'agent.log', { level: e.level, message: e.message });
        return;
      case 'result':
        live.result = { status: e.status, summary: e.summary };
        return;
      case 'usage': {
        const cost = this.deps.estimator.priceUsage({ input_tokens: e.input_tokens, output_tokens: e.output_tokens, web_searches: e.web_searches });
        live.cost += cost;
        live.input += e.input_tokens;
        live.output += e.output_tokens;
        live.searches += e.web_searches;
        await this.sessions.addUsage(live.row.id, { input: e.input_tokens, output: e.output_tokens, searches: e.web_searches, cost }, this.deps.clock.now());
        await this.emit(live, 'cost.update', { cost_so_far: formatCredits(live.cost), reserved: formatCredits(live.row.reserved) });
        if (live.cost >= live.row.reserved && !live.stopReason) {
          live.stopReason = 'budget';
          this.deps.logger.info({ session_id: live.row.id }, 'budget reached: stopping the agent');
          void live.run?.stop('budget');
        }
        return;
      }
    }
  }

  /** Lease heartbeat: keeps the reservation open while the agent lives, and notices a cancel made on another daemon. */
  private async beat(live: LiveSession): Promise<void> {
    try {
      await this.deps.ledger.extend(live.row.reservation_id, this.deps.reservationTtlMs);
      const row = await this.sessions.find(live.row.id, null);
      if (row?.cancel_requested_at && !live.stopReason) this.cancelLocal(live.row.id);
    } catch (err) {
      this.deps.logger.warn({ err: { message: (err as Error).message }, session_id: live.row.id }, 'lease heartbeat failed');
    }
  }

  private statusFor(live: LiveSession, exit: AgentExit): { status: SessionStatus; reason: string } {
    if (live.stopReason === 'budget') return { status: 'budget_exhausted', reason: 'budget' };
    if (live.stopReason === 'cancelled') return { status: 'cancelled', reason: 'cancelled' };
    if (live.stopReason === 'shutdown') return { status: 'interrupted', reason: 'gateway_shutdown' };
    if (exit.reason === 'timeout') return { status: 'timed_out', reason: 'timeout' };
    if (exit.reason === 'spawn_failed') return { status: 'failed', reason: 'agent_not_started' };
    // An agent over one of `agent.limits` fails whatever it said; it is charged the usage it reported.
    if (exit.reason === 'limit') return { status: 'failed', reason: `limit_${exit.limit ?? 'unknown'}` };
    const result = live.result ?? exit.result;
    if (result?.status === 'completed' && exit.exitCode === 0) return { status: 'completed', reason: 'completed' };
    if (result?.status === 'failed') return { status: 'failed', reason: 'agent_reported_failure' };
    return { status: 'failed', reason: exit.signal ? `agent_killed_${exit.signal}` : `agent_exit_${exit.exitCode}` };
  }

  private async finalize(live: LiveSession, exit: AgentExit): Promise<void> {
    const { status, reason } = this.statusFor(live, exit);
    const summary = (live.result ?? exit.result)?.summary?.slice(0, 2000) ?? null;
    const final = await this.settle(live, status, reason, summary, live.cost);
    if (final) await this.publish(live, final);
    this.deps.metrics.ended.inc({ status });
    this.deps.metrics.duration.observe({ status }, (this.deps.clock.now() - live.row.created_at) / 1000);
  }

  /** One transaction: charge min(cost, reserved), release the rest, final status and event, audit, webhook. */
  private async settle(live: LiveSession, status: SessionStatus, reason: string, summary: string | null, cost: number) {
    const now = this.deps.clock.now();
    const charge = Math.min(cost, live.row.reserved) as Micros;
    return this.deps.database.transaction(async (trx) => {
      const repo = this.sessions.with(trx);
      const won = await repo.finish(live.row.id, {
        status,
        end_reason: reason,
        summary,
        final_cost: charge,
        cost_so_far: cost,
        ended_at: now,
        updated_at: now,
      });
      if (!won) return null;
      try {
        await this.deps.ledger.settle(live.row.reservation_id, charge, { actor: { type: 'system', id: null } }, trx);
      } catch (err) {
        // Already settled by the reaper (the lease ran out while we were away): the session still ends.
        if (!(err instanceof GatewayError && err.code === 'INVALID_STATE')) throw err;
      }
      const event = await this.emit(live, 'session.status', { status, final_cost: formatCredits(charge), reason, ...(summary ? { summary } : {}) }, trx);
      const ended = { ...live.row, status, end_reason: reason, summary, final_cost: charge, cost_so_far: cost, ended_at: now, updated_at: now };
      await this.deps.onSessionEnd?.(ended, event, trx);
      await this.deps.audit.record(
        {
          action: END_ACTION[status],
          outcome: status === 'completed' ? 'success' : 'failure',
          actor: { type: 'system', id: null },
          tenantId: live.row.tenant_id,
          target: { type: 'session', id: live.row.id },
          details: { user_id: live.row.user_id, reason, charged: formatCredits(charge), reserved: formatCredits(live.row.reserved) },
        },
        trx,
      );
      return event;
    });
  }

  /** Stops a session running on this daemon; false when it does not run here. */
  cancelLocal(sessionId: string): boolean {
    const live = this.live.get(sessionId);
    if (!live) return false;
    if (!live.stopReason) live.stopReason = 'cancelled';
    void live.run?.stop('cancelled');
    return true;
  }

  /** Waits for a session running here to be finalized (tests, shutdown). */
  async settled(sessionId: string): Promise<void> {
    await this.live.get(sessionId)?.finished;
  }

  /**
   * At start-up: sessions this daemon owned and lost (it crashed or was killed)
   * end as `interrupted`, charged what they had used.
   */
  async recoverOwned(): Promise<number> {
    const rows = await this.sessions.listRunningOwnedBy(this.deps.instanceId);
    for (const row of rows) {
      try {
        const seq = await this.sessions.maxSeq(row.id);
        const live: LiveSession = { row, seq, cost: row.cost_so_far, input: 0, output: 0, searches: 0, result: null, stopReason: null, run: null, heartbeat: null, chain: Promise.resolve(), finished: Promise.resolve() };
        const event = await this.settle(live, 'interrupted', 'gateway_restart', null, row.cost_so_far);
        if (event) await this.publish(live, event);
      } catch (err) {
        // Never block start-up on one session: its lease runs out and the reaper settles it.
        this.deps.logger.error({ err, session_id: row.id }, 'could not end a lost session; the reaper will');
      }
    }
    if (rows.length > 0) this.deps.logger.warn({ sessions: rows.length }, 'sessions lost by a previous run of this daemon ended as interrupted');
    return rows.length;
  }

  /** For the credit reaper: a reservation whose lease ran out belongs to a session whose daemon is gone. */
  async usedByExpired(reservation: Reservation, trx: Queryable): Promise<Micros> {
    const row = await this.sessions.with(trx).findByReservation(reservation.id);
    if (!row || this.live.has(row.id)) return (row?.cost_so_far ?? 0) as Micros;
    const now = this.deps.clock.now();
    const charge = Math.min(row.cost_so_far, reservation.amount);
    if (await this.sessions.with(trx).finish(row.id, { status: 'interrupted', end_reason: 'lease_expired', final_cost: charge, ended_at: now, updated_at: now })) {
      const seq = (await this.sessions.with(trx).maxSeq(row.id)) + 1;
      await this.sessions.with(trx).appendEvent({ session_id: row.id, seq, ts: now, type: 'session.status', data: JSON.stringify({ status: 'interrupted', final_cost: formatCredits(charge), reason: 'lease_expired' }) });
    }
    return charge as Micros;
  }

  /** On shutdown: stop every agent and end its session as interrupted, charged what it used. */
  async stopAll(): Promise<void> {
    this.stopping = true;
    const all = [...this.live.values()];
    for (const live of all) {
      if (!live.stopReason) live.stopReason = 'shutdown';
      void live.run?.stop('shutdown');
    }
    await Promise.all(all.map((l) => l.finished));
  }
}
