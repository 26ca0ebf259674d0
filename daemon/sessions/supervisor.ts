import type { AgentEvent, AgentExit, AgentRun, AgentRunner, PureAgentRequest } from '../agents/types.js';
import type { WorkspaceManager } from '../agents/workspaces.js';
import type { AuditAction } from '../audit/actions.js';
import type { AuditLogger } from '../audit/types.js';
import type { Clock } from '../clock.js';
import type { CostEstimator } from '../credits/estimator.js';
import type { CreditLedger, Reservation } from '../credits/ledger.js';
import { formatCredits, type Micros } from '../credits/money.js';
import { GatewayError } from '../errors.js';
import type { Logger } from '../logger.js';
import { EVERYTHING } from '../policies/index.js';
import { isUnavailableError, type Database, type Queryable } from '../storage/database.js';
import { isStorageFullError } from '../storage/disk.js';
import type { Fence, SessionEventRow, SessionRepository, SessionRow } from '../storage/repos/sessions.js';
import type { SessionStatus } from '../storage/tables/sessions.js';
import type { BusEnvelope, EventBus } from './bus.js';
import { presentEvent } from './presenters.js';
import type { SessionMetrics } from './metrics.js';

/** Called in the finalizing transaction, so a webhook commits with the session's end. */
export type OnSessionEnd = (session: SessionRow, finalEvent: BusEnvelope['event'], trx: Queryable) => Promise<void>;

interface LiveSession {
  row: SessionRow;
  /** The lease this daemon holds: every write of the session requires it. */
  fence: Fence;
  /** Until when the lease is surely ours: the start of the last renewal that committed, plus its length. */
  leaseUntil: number;
  /** When the last renewal started (renewals run every third of the lease). */
  lastBeatAt: number;
  beating: boolean;
  /** The lease moved on elsewhere (the reaper of another daemon ended the session): write nothing more. */
  fenced: boolean;
  seq: number;
  cost: number;
  input: number;
  output: number;
  searches: number;
  result: { status: 'completed' | 'failed'; summary: string } | null;
  stopReason: 'cancelled' | 'budget' | 'shutdown' | 'lease_lost' | null;
  run: AgentRun | null;
  heartbeat: NodeJS.Timeout | null;
  /** Events are stored one after another, in the agent's order. */
  chain: Promise<void>;
  finished: Promise<void>;
}

export interface SupervisorDeps {
  /** Opens the transactions; the rows go through `sessions` (built once by the container). */
  database: Database;
  sessions: SessionRepository;
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

/** The audit action of each way a session ends (docs/audit.md). */
export const END_ACTION: Record<SessionStatus, AuditAction> = {
  running: 'session.execute',
  completed: 'session.complete',
  failed: 'session.fail',
  cancelled: 'session.cancel',
  budget_exhausted: 'session.budget_exhausted',
  timed_out: 'session.timeout',
  interrupted: 'session.interrupt',
};

/** End reasons of an agent that crashed or never started: the only ones whose summary shows its stderr. */
const SHOWS_STDERR = /^(agent_exit_|agent_killed_|agent_not_started$)/;

/**
 * The summary of an ended session: the agent's own, followed for a crash or a
 * failed start by the last lines of its stderr (docs/agent-protocol.md, "Stderr").
 */
export function withStderr(reason: string, summary: string | null, tail: string | null): string | null {
  if (!tail || !SHOWS_STDERR.test(reason)) return summary;
  // A failed start carries the gateway's own line (why the spawn failed), not the agent's stderr.
  const block = reason === 'agent_not_started' ? tail : `agent stderr (last lines):\n${tail}`;
  return summary ? `${summary}\n\n${block}` : block;
}

/** Storage errors worth waiting out: the database is unreachable, busy or out of space for now. */
function isTransientStorageError(err: unknown): boolean {
  return isUnavailableError(err) || isStorageFullError(err);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/**
 * Runs the agents of the sessions this daemon started: stores each event with
 * the next seq and publishes it, prices usage as it arrives, stops an agent
 * whose cost reaches its reservation, keeps the session's lease alive, and
 * finalizes every session exactly once in one transaction (charge what was
 * used, release the rest, final status, audit entry, webhook).
 *
 * Fencing (docs/DEPLOY.md, "Failure modes"): each session's lease is its
 * reservation's expiry plus the session row's `lease_epoch`. Every write of a
 * session (event, usage, phase, settlement) requires the epoch it started
 * with and a running status, so once the reaper of another daemon has ended
 * it, nothing this daemon still had in flight lands. A daemon that cannot renew
 * a lease kills the agent before the lease can run out (with a margin), so no
 * agent runs unfenced. Writes that fail because the store is unreachable or
 * full are retried, in order, so no event and no outcome is lost to a short fault.
 */
export class SessionSupervisor {
  private readonly live = new Map<string, LiveSession>();
  /** Final events of sessions the reaper ended, published once its transaction has committed. */
  private readonly reapedEvents = new Map<string, BusEnvelope>();
  private readonly sessions: SessionRepository;
  private stopping = false;

  constructor(private readonly deps: SupervisorDeps) {
    this.sessions = deps.sessions;
  }

  /** What starts the agents. */
  get runner(): AgentRunner {
    return this.deps.runner;
  }

  /** Whether the agents this supervisor starts run sandboxed (recorded on each session at execute). */
  get sandboxed(): boolean {
    return this.deps.runner.sandboxed === true;
  }

  get runningCount(): number {
    return this.live.size;
  }

  /** Whether this daemon runs the session's agent now (its reservation is then this daemon's to settle). */
  runsHere(sessionId: string): boolean {
    return this.live.has(sessionId);
  }

  /** How long before its lease runs out an agent whose lease could not be renewed is killed. */
  private get leaseMarginMs(): number {
    return Math.max(1000, Math.floor(this.deps.reservationTtlMs / 4));
  }

  /** Starts the agent of a session whose row and reservation are committed. Never throws: a failure ends the session. */
  launch(row: SessionRow, request: Omit<PureAgentRequest, 'workingDirectory'>): Promise<void> {
    let resolveFinished!: () => void;
    const now = this.deps.clock.now();
    const live: LiveSession = {
      row,
      fence: { id: row.id, epoch: row.lease_epoch },
      leaseUntil: now + this.deps.reservationTtlMs,
      lastBeatAt: now,
      beating: false,
      fenced: false,
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
        await this.enqueue(live, () => this.emit(live, 'session.status', { status: 'running' }).then(() => undefined));
        const workingDirectory = await this.deps.workspaces.create(row.id);
        const ttl = this.deps.reservationTtlMs;
        live.heartbeat = setInterval(
          () => void this.beat(live),
          Math.max(200, Math.min(Math.floor(ttl / 3), Math.floor(this.leaseMarginMs / 2))),
        );
        live.heartbeat.unref();
        live.run = this.deps.runner.start(
          row.id,
          { ...request, workingDirectory },
          {
            onEvent: (e) => this.enqueue(live, () => this.onAgentEvent(live, e)),
            onInvalidLine: () => this.deps.metrics.invalidLines.inc(),
          },
        );
        if (live.fenced || live.stopReason === 'lease_lost') void live.run.stop(live.stopReason ?? 'lease_lost', 0);
        else if (this.stopping || live.stopReason) await live.run.stop(live.stopReason ?? 'shutdown');
        exit = await live.run.done;
      } catch (err) {
        this.deps.logger.error({ err, session_id: row.id }, 'agent could not be started');
        exit = {
          reason: 'spawn_failed',
          exitCode: null,
          signal: null,
          result: null,
          invalidLines: 0,
          stopReason: null,
        };
      }
      if (live.heartbeat) clearInterval(live.heartbeat);
      await live.chain;
      try {
        await this.finalize(live, exit);
      } catch (err) {
        // The reservation's lease runs out and the reaper settles it: nothing stays held.
        this.deps.logger.error({ err, session_id: row.id }, 'finalizing a session failed; the reaper will settle it');
      } finally {
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

  /**
   * Runs a write of `live`'s session, waiting out an unreachable or full store
   * (back-off up to 2 s) for as long as the session can still be written: not
   * once it is fenced, and for at most 2 s once the daemon is shutting down.
   */
  private async durably<T>(live: LiveSession, what: string, write: () => Promise<T>): Promise<T> {
    const started = this.deps.clock.now();
    let delay = 50;
    let warned = false;
    for (;;) {
      try {
        const result = await write();
        if (warned) this.deps.logger.info({ session_id: live.row.id, what }, 'storage is back: write done');
        return result;
      } catch (err) {
        const waited = this.deps.clock.now() - started;
        const limit = this.stopping ? 2000 : 10 * 60_000;
        if (!isTransientStorageError(err) || live.fenced || waited >= limit) throw err;
        if (!warned) {
          warned = true;
          this.deps.logger.warn(
            { err: { message: (err as Error).message }, session_id: live.row.id, what },
            'storage unavailable: retrying the write',
          );
        }
        await sleep(delay);
        delay = Math.min(delay * 2, 2000);
      }
    }
  }

  /** Stores an event with the next seq (while the lease holds), then publishes it; null when fenced off. */
  private async emit(
    live: LiveSession,
    type: string,
    data: Record<string, unknown>,
  ): Promise<BusEnvelope['event'] | null> {
    if (live.fenced) return null;
    const event = { ts: this.deps.clock.now(), type, data: JSON.stringify(data) };
    const row = await this.durably(live, 'event', () =>
      this.deps.database.dialect === 'postgres'
        ? this.sessions.appendEventFencedPostgres(live.fence, event)
        : this.deps.database.transaction((trx) => this.sessions.with(trx).appendEventFenced(live.fence, event)),
    );
    if (!row) {
      this.onFenced(live);
      return null;
    }
    live.seq = row.seq;
    const presented = presentEvent(row);
    await this.publish(live, presented);
    return presented;
  }

  private async publish(live: LiveSession, event: BusEnvelope['event']): Promise<void> {
    try {
      await this.deps.bus.publish({ userId: live.row.user_id, tenantId: live.row.tenant_id, event });
    } catch (err) {
      // Stored already: a subscriber replays it from the database.
      this.deps.logger.warn(
        { err: { message: (err as Error).message }, session_id: live.row.id },
        'publishing an event failed',
      );
    }
  }

  private async onAgentEvent(live: LiveSession, e: AgentEvent): Promise<void> {
    if (live.fenced) return;
    switch (e.type) {
      case 'phase': {
        const held = await this.durably(live, 'phase', () =>
          this.sessions.updateFenced(live.fence, { current_phase: e.phase, updated_at: this.deps.clock.now() }),
        );
        if (!held) return this.onFenced(live);
        await this.emit(live, 'agent.phase', { phase: e.phase });
        return;
      }
      case 'progress':
        await this.emit(live, 'agent.progress', {
          message: e.message,
          ...(e.percent === undefined ? {} : { percent: e.percent }),
        });
        return;
      case 'log':
        await this.emit(live, 'agent.log', { level: e.level, message: e.message });
        return;
      case 'result':
        live.result = { status: e.status, summary: e.summary };
        return;
      case 'usage': {
        const cost = this.deps.estimator.priceUsage({
          input_tokens: e.input_tokens,
          output_tokens: e.output_tokens,
          web_searches: e.web_searches,
        });
        // Counted at once: what the agent reported is charged even if storing it has to wait.
        live.cost += cost;
        live.input += e.input_tokens;
        live.output += e.output_tokens;
        live.searches += e.web_searches;
        if (live.cost >= live.row.reserved && !live.stopReason) {
          live.stopReason = 'budget';
          this.deps.logger.info({ session_id: live.row.id }, 'budget reached: stopping the agent');
          void live.run?.stop('budget');
        }
        const usage = { input: e.input_tokens, output: e.output_tokens, searches: e.web_searches, cost };
        const held = await this.durably(live, 'usage', () =>
          this.sessions.addUsage(live.fence, usage, this.deps.clock.now()),
        );
        if (!held) return this.onFenced(live);
        await this.emit(live, 'cost.update', {
          cost_so_far: formatCredits(live.cost),
          reserved: formatCredits(live.row.reserved),
        });
        return;
      }
    }
  }

  /**
   * The lease heartbeat, on a timer: renews the session's lease (its row, under
   * the fence, and its reservation's expiry) every third of the lease, notices a
   * cancel made on another daemon, and kills the agent when the lease could not
   * be renewed and is about to run out.
   */
  private async beat(live: LiveSession): Promise<void> {
    const now = this.deps.clock.now();
    if (!live.fenced && live.stopReason !== 'lease_lost' && now >= live.leaseUntil - this.leaseMarginMs) {
      this.deps.logger.error(
        { session_id: live.row.id, lease_until: live.leaseUntil },
        'the session lease could not be renewed: killing the agent before another daemon may take the session',
      );
      this.loseLease(live);
    }
    if (live.beating || live.fenced || now - live.lastBeatAt < this.deps.reservationTtlMs / 3) return;
    live.beating = true;
    live.lastBeatAt = now;
    try {
      const held = await this.deps.database.transaction(async (trx) => {
        const row = await this.sessions.with(trx).touchFenced(live.fence, now);
        if (!row) return null;
        await this.deps.ledger.extend(live.row.reservation_id, this.deps.reservationTtlMs, {}, trx);
        return row;
      });
      if (!held) return this.onFenced(live);
      live.leaseUntil = Math.max(live.leaseUntil, now + this.deps.reservationTtlMs);
      if (held.cancelRequestedAt && !live.stopReason) this.cancelLocal(live.row.id);
    } catch (err) {
      // The reservation is no longer open: someone settled it, so the session is no longer ours.
      if (err instanceof GatewayError && err.code === 'INVALID_STATE') return this.onFenced(live);
      this.deps.logger.warn(
        { err: { message: (err as Error).message }, session_id: live.row.id },
        'lease heartbeat failed',
      );
    } finally {
      live.beating = false;
    }
  }

  /** The lease could not be renewed in time: the agent is killed at once (no grace), the session ends interrupted. */
  private loseLease(live: LiveSession): void {
    live.stopReason = 'lease_lost';
    void live.run?.stop('lease_lost', 0);
  }

  /** The session was ended elsewhere (its lease moved on): kill the agent and write nothing more. */
  private onFenced(live: LiveSession): void {
    if (live.fenced) return;
    live.fenced = true;
    this.deps.logger.warn(
      { session_id: live.row.id },
      'the session was ended elsewhere (lease lost): killing its agent, writing nothing more',
    );
    if (!live.stopReason) live.stopReason = 'lease_lost';
    void live.run?.stop('lease_lost', 0);
  }

  private statusFor(live: LiveSession, exit: AgentExit): { status: SessionStatus; reason: string } {
    if (live.stopReason === 'lease_lost') return { status: 'interrupted', reason: 'lease_lost' };
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
    if (live.fenced) {
      this.deps.metrics.ended.inc({ status: 'interrupted' });
      return; // ended, charged and announced by whoever took the session
    }
    const summary = withStderr(
      reason,
      (live.result ?? exit.result)?.summary?.slice(0, 2000) ?? null,
      exit.stderrTail ?? null,
    );
    const final = await this.durably(live, 'settlement', () => this.settle(live, status, reason, summary, live.cost));
    if (final) await this.publish(live, final);
    else this.onFenced(live);
    this.deps.metrics.ended.inc({ status });
    this.deps.metrics.duration.observe({ status }, (this.deps.clock.now() - live.row.created_at) / 1000);
  }

  /**
   * The owner's settlement, one transaction under the fence: final status, charge
   * min(cost, reserved) and release the rest, final event, webhook, audit entry.
   * Null when the fence no longer holds (someone else ended the session).
   */
  private async settle(live: LiveSession, status: SessionStatus, reason: string, summary: string | null, cost: number) {
    const now = this.deps.clock.now();
    const charge = Math.min(cost, live.row.reserved) as Micros;
    return this.deps.database.transaction(async (trx) => {
      const patch = {
        status,
        end_reason: reason,
        summary,
        final_cost: charge,
        cost_so_far: cost,
        ended_at: now,
        updated_at: now,
      };
      if (!(await this.sessions.with(trx).finish(live.row.id, patch, live.fence))) return null;
      try {
        await this.deps.ledger.settle(live.row.reservation_id, charge, { actor: { type: 'system', id: null } }, trx);
      } catch (err) {
        // Already settled by this daemon's reaper in an earlier version's way: the session still ends.
        if (!(err instanceof GatewayError && err.code === 'INVALID_STATE')) throw err;
      }
      const ended = {
        ...live.row,
        ...patch,
        input_tokens: live.row.input_tokens + live.input,
        output_tokens: live.row.output_tokens + live.output,
        web_searches: live.row.web_searches + live.searches,
      };
      return this.announceEnd(trx, ended, {
        status,
        final_cost: formatCredits(charge),
        reason,
        ...(summary ? { summary } : {}),
      });
    });
  }

  /** In the transaction that ended the session: its final event, webhook and audit entry, whoever ended it. */
  private async announceEnd(
    trx: Queryable,
    ended: SessionRow,
    data: Record<string, unknown>,
  ): Promise<BusEnvelope['event']> {
    const repo = this.sessions.with(trx);
    const row: SessionEventRow = await repo.appendFinalEvent(ended.id, {
      ts: ended.updated_at,
      type: 'session.status',
      data: JSON.stringify(data),
    });
    const event = presentEvent(row);
    // The session as GET /v1/sessions/:id shows it now (usage, phase, cost, last_seq), read in this
    // transaction: `ended` may be the row as it was when the run started, with the end patched on.
    const stored = await repo.find(ended.id, EVERYTHING);
    const final = { ...(stored ?? ended), last_seq: row.seq };
    await this.deps.onSessionEnd?.(final, event, trx);
    await this.deps.audit.record(
      {
        action: END_ACTION[ended.status],
        outcome: ended.status === 'completed' ? 'success' : 'failure',
        actor: { type: 'system', id: null },
        tenantId: ended.tenant_id,
        target: { type: 'session', id: ended.id },
        details: {
          user_id: ended.user_id,
          reason: ended.end_reason,
          charged: formatCredits(ended.final_cost ?? 0),
          reserved: formatCredits(ended.reserved),
        },
      },
      trx,
    );
    return event;
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
   * end as `interrupted`, charged what they had recorded, with their webhook and
   * audit entry. Their agents died with the daemon or were stopped before this
   * runs (see `ProcessRunner.stopOrphans`).
   */
  async recoverOwned(): Promise<number> {
    const rows = await this.sessions.listRunningOwnedBy(this.deps.instanceId);
    let ended = 0;
    for (const row of rows) {
      try {
        if (await this.endTakenOver(row, 'gateway_restart')) ended += 1;
      } catch (err) {
        // Never block start-up on one session: its lease runs out and the reaper settles it.
        this.deps.logger.error({ err, session_id: row.id }, 'could not end a lost session; the reaper will');
      }
    }
    if (rows.length > 0)
      this.deps.logger.warn({ sessions: ended }, 'sessions lost by a previous run of this daemon ended as interrupted');
    return ended;
  }

  /** Ends a session whose owner is gone, as `interrupted`, charged what it recorded; one transaction. */
  private async endTakenOver(row: SessionRow, reason: string): Promise<boolean> {
    const event = await this.deps.database.transaction(async (trx) => {
      const now = this.deps.clock.now();
      const current = await this.sessions.with(trx).find(row.id, EVERYTHING);
      if (current?.status !== 'running') return null;
      const charge = Math.min(current.cost_so_far, current.reserved) as Micros;
      const patch = {
        status: 'interrupted' as const,
        end_reason: reason,
        final_cost: charge,
        ended_at: now,
        updated_at: now,
      };
      if (!(await this.sessions.with(trx).finish(row.id, patch, 'takeover'))) return null;
      try {
        await this.deps.ledger.settle(current.reservation_id, charge, { actor: { type: 'system', id: null } }, trx);
      } catch (err) {
        if (!(err instanceof GatewayError && err.code === 'INVALID_STATE')) throw err;
      }
      return this.announceEnd(
        trx,
        { ...current, ...patch },
        { status: 'interrupted', final_cost: formatCredits(charge), reason },
      );
    });
    if (event)
      await this.deps.bus.publish({ userId: row.user_id, tenantId: row.tenant_id, event }).catch(() => undefined);
    return event !== null;
  }

  /**
   * For the credit reaper, inside its transaction: a reservation whose lease ran
   * out belongs to a session whose daemon is gone (or cut off). The session ends
   * `interrupted` (lease_expired) with its final event, webhook and audit entry,
   * and its lease epoch moves on, so its old owner's late writes are refused.
   */
  async usedByExpired(reservation: Reservation, trx: Queryable): Promise<Micros> {
    const repo = this.sessions.with(trx);
    const row = await repo.findByReservation(reservation.id);
    if (!row) return 0 as Micros;
    const charge = Math.min(row.cost_so_far, reservation.amount) as Micros;
    if (row.status !== 'running') return charge;
    const now = this.deps.clock.now();
    const patch = {
      status: 'interrupted' as const,
      end_reason: 'lease_expired',
      final_cost: charge,
      ended_at: now,
      updated_at: now,
    };
    if (await repo.finish(row.id, patch, 'takeover')) {
      const event = await this.announceEnd(
        trx,
        { ...row, ...patch },
        { status: 'interrupted', final_cost: formatCredits(charge), reason: 'lease_expired' },
      );
      this.reapedEvents.set(reservation.id, { userId: row.user_id, tenantId: row.tenant_id, event });
    }
    return charge;
  }

  /** After the reaper's transaction committed: publishes the final event `usedByExpired` stored. */
  async publishReaped(reservationId: string): Promise<void> {
    const pending = this.reapedEvents.get(reservationId);
    if (!pending) return;
    this.reapedEvents.delete(reservationId);
    await this.deps.bus.publish(pending).catch(() => undefined);
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
