import { sql, type Selectable } from 'kysely';
import { reachFilter, type Reach } from '../../policies/index.js';
import type { Queryable } from '../database.js';
import type { SessionStatus, SessionTables } from '../tables/sessions.js';

export type SessionRow = Selectable<SessionTables['sessions']>;
export type SessionEventRow = Selectable<SessionTables['session_events']>;

/**
 * An owner's claim on a running session: its id and the lease epoch it started
 * with. Writes made with a fence happen only while the session still runs
 * under that epoch (docs/DEPLOY.md, "Failure modes").
 */
export interface Fence {
  id: string;
  epoch: number;
}

/** An event to store; its seq is given by the database (the session's `last_seq` + 1). */
export interface NewEvent {
  ts: number;
  type: string;
  /** JSON */
  data: string;
}

export const FINAL_STATUSES: SessionStatus[] = [
  'completed',
  'failed',
  'cancelled',
  'budget_exhausted',
  'timed_out',
  'interrupted',
];

/** Sessions and their events. Every read takes the caller's reach (daemon/policies) and applies it in SQL. */
export class SessionRepository {
  constructor(private readonly db: Queryable) {}

  with(trx: Queryable): SessionRepository {
    return new SessionRepository(trx);
  }

  async insert(row: SessionRow): Promise<void> {
    await this.db.insertInto('sessions').values(row).execute();
  }

  /** Running sessions of a user: the concurrency slots in use. */
  async countRunning(userId: string): Promise<number> {
    const r = await this.db
      .selectFrom('sessions')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('user_id', '=', userId)
      .where('status', '=', 'running')
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }

  async find(id: string, reach: Reach): Promise<SessionRow | undefined> {
    let q = this.db.selectFrom('sessions').selectAll().where('id', '=', id);
    const f = reachFilter(reach);
    if (f) q = q.where(f.column, '=', f.value);
    return q.executeTakeFirst();
  }

  async list(
    reach: Reach,
    options: { limit: number; before?: string | null; status?: SessionStatus; userId?: string },
  ): Promise<SessionRow[]> {
    let q = this.db.selectFrom('sessions').selectAll().orderBy('id', 'desc').limit(options.limit);
    const f = reachFilter(reach);
    if (f) q = q.where(f.column, '=', f.value);
    if (options.userId) q = q.where('user_id', '=', options.userId);
    if (options.status) q = q.where('status', '=', options.status);
    if (options.before) q = q.where('id', '<', options.before);
    return q.execute();
  }

  async listRunningOwnedBy(owner: string): Promise<SessionRow[]> {
    return this.db
      .selectFrom('sessions')
      .selectAll()
      .where('owner', '=', owner)
      .where('status', '=', 'running')
      .execute();
  }

  /** How far each session got (its last stored seq) and whether it still runs: the stream's reconciliation, one query per batch. */
  async progress(ids: string[]): Promise<Array<{ id: string; last_seq: number; status: SessionStatus }>> {
    if (ids.length === 0) return [];
    const rows = await this.db
      .selectFrom('sessions')
      .select(['id', 'last_seq', 'status'])
      .where('id', 'in', ids)
      .execute();
    return rows.map((r) => ({ id: r.id, last_seq: Number(r.last_seq), status: r.status }));
  }

  async findByReservation(reservationId: string): Promise<SessionRow | undefined> {
    return this.db.selectFrom('sessions').selectAll().where('reservation_id', '=', reservationId).executeTakeFirst();
  }

  /**
   * Stores an event of a running session with the next seq, only while `fence`
   * holds; null when it does not (the session ended or was taken elsewhere).
   * Run it in a transaction: the seq is taken (under the row's lock) and the
   * event inserted together, so two writers never collide on a seq and nothing
   * is stored after the final status.
   */
  async appendEventFenced(fence: Fence, event: NewEvent): Promise<SessionEventRow | null> {
    const taken = await this.db
      .updateTable('sessions')
      .set({ last_seq: sql`last_seq + 1`, updated_at: event.ts })
      .where('id', '=', fence.id)
      .where('status', '=', 'running')
      .where('lease_epoch', '=', fence.epoch)
      .returning('last_seq')
      .executeTakeFirst();
    if (!taken) return null;
    const row = { session_id: fence.id, seq: Number(taken.last_seq), ...event };
    await this.db.insertInto('session_events').values(row).execute();
    return row;
  }

  /**
   * `appendEventFenced` as ONE statement (Postgres: a data-modifying CTE takes
   * the seq under the row's lock and inserts the event atomically), so storing
   * an event is one round trip and holds a pooled connection for one query,
   * not four. Null when `fence` no longer holds.
   */
  async appendEventFencedPostgres(fence: Fence, event: NewEvent): Promise<SessionEventRow | null> {
    const r = await sql<{ seq: number | string }>`
      with taken as (
        update sessions set last_seq = last_seq + 1, updated_at = ${event.ts}
        where id = ${fence.id} and status = 'running' and lease_epoch = ${fence.epoch}
        returning last_seq
      )
      insert into session_events (session_id, seq, ts, type, data)
      select ${fence.id}, last_seq, ${event.ts}, ${event.type}, ${event.data} from taken
      returning seq`.execute(this.db);
    const row = r.rows[0];
    return row ? { session_id: fence.id, seq: Number(row.seq), ...event } : null;
  }

  /**
   * Stores the final status event, in the transaction whose `finish()` just
   * ended the session (which holds its row): after every stored event, even one
   * a crash left without its `last_seq` bump.
   */
  async appendFinalEvent(sessionId: string, event: NewEvent): Promise<SessionEventRow> {
    const current = await this.db
      .selectFrom('sessions')
      .select('last_seq')
      .where('id', '=', sessionId)
      .executeTakeFirstOrThrow();
    const seq = Math.max(Number(current.last_seq), await this.maxSeq(sessionId)) + 1;
    const row = { session_id: sessionId, seq, ...event };
    await this.db.insertInto('session_events').values(row).execute();
    await this.db
      .updateTable('sessions')
      .set({ last_seq: seq, updated_at: event.ts })
      .where('id', '=', sessionId)
      .execute();
    return row;
  }

  /**
   * The owner's lease heartbeat on the session row: true while `fence` holds.
   * Returns the row's cancel request (a cancel made on another daemon) when it does.
   */
  async touchFenced(fence: Fence, now: number): Promise<{ cancelRequestedAt: number | null } | null> {
    const r = await this.db
      .updateTable('sessions')
      .set({ updated_at: now })
      .where('id', '=', fence.id)
      .where('status', '=', 'running')
      .where('lease_epoch', '=', fence.epoch)
      .returning('cancel_requested_at')
      .executeTakeFirst();
    return r ? { cancelRequestedAt: r.cancel_requested_at === null ? null : Number(r.cancel_requested_at) } : null;
  }

  /** An owner's update of a running session (its phase); false when `fence` no longer holds. */
  async updateFenced(fence: Fence, patch: Partial<Pick<SessionRow, 'current_phase' | 'updated_at'>>): Promise<boolean> {
    const r = await this.db
      .updateTable('sessions')
      .set(patch)
      .where('id', '=', fence.id)
      .where('status', '=', 'running')
      .where('lease_epoch', '=', fence.epoch)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** The highest stored seq: the truth when a crash came between storing an event and bumping `last_seq`. */
  async maxSeq(sessionId: string): Promise<number> {
    const r = await this.db
      .selectFrom('session_events')
      .select((eb) => eb.fn.max('seq').as('m'))
      .where('session_id', '=', sessionId)
      .executeTakeFirst();
    return Number(r?.m ?? 0);
  }

  async events(sessionId: string, after: number, limit: number): Promise<SessionEventRow[]> {
    return this.db
      .selectFrom('session_events')
      .selectAll()
      .where('session_id', '=', sessionId)
      .where('seq', '>', after)
      .orderBy('seq', 'asc')
      .limit(limit)
      .execute();
  }

  async update(id: string, patch: Partial<Omit<SessionRow, 'id'>>): Promise<void> {
    await this.db.updateTable('sessions').set(patch).where('id', '=', id).execute();
  }

  /**
   * Moves a running session to a final status exactly once; false when it had
   * already ended. The owner passes its `fence` (refused once the lease moved
   * on); anyone else (the reaper, a recovery) passes `'takeover'`, which moves
   * the lease epoch on so that the old owner's late writes are refused.
   */
  async finish(
    id: string,
    patch: Partial<Omit<SessionRow, 'id' | 'lease_epoch'>> & { status: SessionStatus },
    by: Fence | 'takeover',
  ): Promise<boolean> {
    let q = this.db.updateTable('sessions').where('id', '=', id).where('status', '=', 'running');
    q =
      by === 'takeover'
        ? q.set({ ...patch, lease_epoch: sql`lease_epoch + 1` })
        : q.set(patch).where('lease_epoch', '=', by.epoch);
    const r = await q.executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** Adds usage and cost while `fence` holds; false when it does not (nothing is added). */
  async addUsage(
    fence: Fence,
    usage: { input: number; output: number; searches: number; cost: number },
    now: number,
  ): Promise<boolean> {
    const r = await this.db
      .updateTable('sessions')
      .set({
        input_tokens: sql`input_tokens + ${usage.input}`,
        output_tokens: sql`output_tokens + ${usage.output}`,
        web_searches: sql`web_searches + ${usage.searches}`,
        cost_so_far: sql`cost_so_far + ${usage.cost}`,
        updated_at: now,
      })
      .where('id', '=', fence.id)
      .where('status', '=', 'running')
      .where('lease_epoch', '=', fence.epoch)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /**
   * Locks the user's row for the rest of the transaction, serializing their executes (Postgres;
   * SQLite's write lock already does). FOR NO KEY UPDATE, not FOR UPDATE: inserts that reference
   * the user (session events, audit rows) take KEY SHARE for their foreign-key check, and
   * FOR UPDATE would make a settling session and a new execute of the same user deadlock.
   */
  async lockUser(userId: string, dialect: 'sqlite' | 'postgres'): Promise<void> {
    const q = this.db.selectFrom('users').select('id').where('id', '=', userId);
    await (dialect === 'postgres' ? q.forNoKeyUpdate() : q).executeTakeFirst();
  }
}
