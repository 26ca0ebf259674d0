import { sql, type Selectable } from 'kysely';
import type { Queryable } from '../database.js';
import type { SessionStatus, SessionTables } from '../tables/sessions.js';

export type SessionRow = Selectable<SessionTables['sessions']>;
export type SessionEventRow = Selectable<SessionTables['session_events']>;

/** Who may see a session: its owner, a tenant's admin, or (null) a platform admin. */
export type SessionScope = { userId: string } | { tenantId: string } | null;

export const FINAL_STATUSES: SessionStatus[] = ['completed', 'failed', 'cancelled', 'budget_exhausted', 'timed_out', 'interrupted'];

/** Sessions and their events. Every read takes the caller's scope and applies it in SQL. */
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

  async find(id: string, scope: SessionScope): Promise<SessionRow | undefined> {
    let q = this.db.selectFrom('sessions').selectAll().where('id', '=', id);
    if (scope && 'userId' in scope) q = q.where('user_id', '=', scope.userId);
    else if (scope) q = q.where('tenant_id', '=', scope.tenantId);
    return q.executeTakeFirst();
  }

  async list(scope: SessionScope, options: { limit: number; before?: string | null; status?: SessionStatus; userId?: string }): Promise<SessionRow[]> {
    let q = this.db.selectFrom('sessions').selectAll().orderBy('id', 'desc').limit(options.limit);
    if (scope && 'userId' in scope) q = q.where('user_id', '=', scope.userId);
    else if (scope) q = q.where('tenant_id', '=', scope.tenantId);
    if (options.userId) q = q.where('user_id', '=', options.userId);
    if (options.status) q = q.where('status', '=', options.status);
    if (options.before) q = q.where('id', '<', options.before);
    return q.execute();
  }

  async listRunningOwnedBy(owner: string): Promise<SessionRow[]> {
    return this.db.selectFrom('sessions').selectAll().where('owner', '=', owner).where('status', '=', 'running').execute();
  }

  async findByReservation(reservationId: string): Promise<SessionRow | undefined> {
    return this.db.selectFrom('sessions').selectAll().where('reservation_id', '=', reservationId).executeTakeFirst();
  }

  async appendEvent(row: SessionEventRow): Promise<void> {
    await this.db.insertInto('session_events').values(row).execute();
    await this.db.updateTable('sessions').set({ last_seq: row.seq, updated_at: row.ts }).where('id', '=', row.session_id).execute();
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

  /** Moves a running session to a final status exactly once; false when it had already ended. */
  async finish(id: string, patch: Partial<Omit<SessionRow, 'id'>> & { status: SessionStatus }): Promise<boolean> {
    const r = await this.db.updateTable('sessions').set(patch).where('id', '=', id).where('status', '=', 'running').executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** Adds usage and cost; returns the new totals. */
  async addUsage(id: string, usage: { input: number; output: number; searches: number; cost: number }, now: number): Promise<void> {
    await this.db
      .updateTable('sessions')
      .set({
        input_tokens: sql`input_tokens + ${usage.input}`,
        output_tokens: sql`output_tokens + ${usage.output}`,
        web_searches: sql`web_searches + ${usage.searches}`,
        cost_so_far: sql`cost_so_far + ${usage.cost}`,
        updated_at: now,
      })
      .where('id', '=', id)
      .execute();
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
