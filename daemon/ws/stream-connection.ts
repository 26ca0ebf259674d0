import { WebSocket, type RawData } from 'ws';
import type { ClientInfo } from '../auth/auth-service.js';
import type { Clock } from '../clock.js';
import type { ErrorCode } from '../errors.js';
import { NUL_MESSAGE, nulFields } from '../http/validation.js';
import { isId } from '../ids.js';
import type { Logger } from '../logger.js';
import type { SessionEvent } from '../sessions/bus.js';
import { presentEvent } from '../sessions/presenters.js';
import { reachFor } from '../policies/index.js';
import { FINAL_STATUSES, type SessionRepository } from '../storage/repos/sessions.js';
import type { StreamGrant } from './grants.js';
import type { StreamMetrics } from './metrics.js';

/** Close codes (RFC 6455 section 7.4.1 and the IANA registry). */
export const CLOSE = {
  GOING_AWAY: 1001,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  TRY_AGAIN_LATER: 1013,
} as const;

/** Stored events read per query while replaying. */
const REPLAY_PAGE = 500;
/** Live events held for one subscription while it replays; past this they are dropped and re-read from the database. */
const LIVE_BUFFER_MAX = 1000;
/** Replay rounds that may end on a gap before an event is delivered anyway (a gap the database cannot fill). */
const MAX_GAP_ROUNDS = 3;

const FINAL = new Set<string>(FINAL_STATUSES);

/** What a connection needs from the server that holds it. */
export interface StreamHub {
  sessions: SessionRepository;
  metrics: StreamMetrics;
  logger: Logger;
  clock: Clock;
  limits: {
    maxSubscriptions: number;
    maxBufferedBytes: number;
    messagesPerSecond: number;
    messageBurst: number;
    slowCloseGraceMs: number;
  };
  watch(sessionId: string, conn: StreamConnection): void;
  unwatch(sessionId: string, conn: StreamConnection): void;
  notFound(conn: StreamConnection, sessionId: string): void;
}

/** One session a connection follows: the last seq it sent, and live events held while it replays. */
interface Subscription {
  sessionId: string;
  ownerId: string;
  lastSeq: number;
  catchingUp: boolean;
  buffer: SessionEvent[];
  overflowed: boolean;
  /** Made by the connection itself (no `?sessions=`: every session of the user), not by a subscribe message. */
  auto?: boolean;
  /** When an event was last sent for it (or it was made): a feed quiet for long is reconciled from the database. */
  lastSentAt: number;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isSeq = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * One client of the stream: its subscriptions, the replay-then-live hand-over
 * (no gap, no duplicate), a budget for client messages, and back-pressure.
 */
export class StreamConnection {
  /** Cleared by each heartbeat ping, set again by the pong. */
  alive = true;
  private closed = false;
  private readonly subs = new Map<string, Subscription>();
  /** Session ids whose subscription is being authorized. */
  private readonly pending = new Set<string>();
  private tokens: number;
  private refilledAt: number;
  private rateErrorAt = 0;
  readonly closedPromise: Promise<void>;

  constructor(
    readonly id: string,
    readonly ws: WebSocket,
    readonly grant: StreamGrant,
    /** The upgrade's request id, client address and user agent (the edge's; daemon/http/edge.ts). */
    readonly client: ClientInfo,
    private readonly hub: StreamHub,
  ) {
    this.tokens = hub.limits.messageBurst;
    this.refilledAt = hub.clock.now();
    this.closedPromise = new Promise((resolve) => ws.once('close', () => resolve()));
    ws.once('close', () => {
      this.closed = true;
      for (const id of this.subs.keys()) hub.unwatch(id, this);
      this.subs.clear();
    });
  }

  get userId(): string {
    return this.grant.principal.userId;
  }

  /** No `?sessions=` in the URL: the connection carries every session of its user as it happens. */
  followsAll = false;

  /** Greets the client, then subscribes to the sessions named in the URL (none named: all of the user's, live). */
  start(sessions: string[], after: number | null): void {
    this.followsAll = sessions.length === 0;
    this.sendControl({ type: 'connection_established', data: { connection_id: this.id } });
    this.ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    this.ws.on('pong', () => {
      this.alive = true;
    });
    for (const id of sessions) void this.subscribe(id, after);
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.ws.close(code, reason);
  }

  /** A live event of a session this connection may follow (the hub routes by session id). */
  onLive(event: SessionEvent, ownerId: string, encoded: () => Buffer): void {
    const sub = this.subs.get(event.session_id);
    if (!sub || sub.ownerId !== ownerId) return;
    if (sub.catchingUp) {
      if (sub.buffer.length >= LIVE_BUFFER_MAX) {
        // Everything dropped here is stored already: the next replay round reads it back.
        sub.buffer = [];
        sub.overflowed = true;
      }
      sub.buffer.push(event);
      return;
    }
    if (event.seq <= sub.lastSeq) return;
    if (event.seq > sub.lastSeq + 1) {
      // A message lost on the bus (Redis outage): fill the gap from the database.
      sub.buffer.push(event);
      void this.catchUp(sub);
      return;
    }
    this.sendEvent(sub, event, encoded());
  }

  /**
   * All-sessions mode: a session of the user that starts while the connection is
   * open is followed from its first event (seq 1), so nothing of it is missed.
   * Sessions already running when the client connected are followed by
   * subscribing to them, with `after` when resuming.
   */
  onUserEvent(event: SessionEvent, ownerId: string, encoded: () => Buffer): void {
    if (!this.followsAll || this.closed || ownerId !== this.userId || event.seq !== 1) return;
    if (this.subs.has(event.session_id) || this.pending.has(event.session_id)) return;
    if (this.subs.size >= this.hub.limits.maxSubscriptions) return;
    const sub: Subscription = {
      sessionId: event.session_id,
      ownerId,
      lastSeq: event.seq - 1,
      catchingUp: false,
      buffer: [],
      overflowed: false,
      auto: true,
      lastSentAt: this.hub.clock.now(),
    };
    this.subs.set(sub.sessionId, sub);
    this.hub.watch(sub.sessionId, this);
    this.onLive(event, ownerId, encoded);
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    if (this.closed) return;
    if (!this.takeToken()) {
      const now = this.hub.clock.now();
      if (now - this.rateErrorAt >= 1000) {
        this.rateErrorAt = now;
        this.sendError(
          'RATE_LIMITED',
          `at most ${this.hub.limits.messagesPerSecond} messages a second; messages over it are dropped`,
        );
      }
      return;
    }
    if (isBinary) return this.sendError('INVALID_JSON', 'messages must be JSON text frames');
    let msg: unknown;
    try {
      msg = JSON.parse((Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer)).toString('utf8'));
    } catch {
      return this.sendError('INVALID_JSON', 'message is not valid JSON');
    }
    if (!isRecord(msg)) return this.sendError('INVALID_FIELD', 'message must be a JSON object');
    // U+0000 never reaches a lookup or the audit log (Postgres text cannot hold it).
    const nul = nulFields(msg)[0];
    if (nul !== undefined) return this.sendError('INVALID_FIELD', `${nul.slice(0, 64)} ${NUL_MESSAGE}`);
    const sessionId = typeof msg.session_id === 'string' && msg.session_id.length <= 64 ? msg.session_id : null;
    if (msg.type === 'subscribe') {
      const extra = Object.keys(msg).filter((k) => !['type', 'session_id', 'after'].includes(k));
      if (extra.length > 0) return this.sendError('INVALID_FIELD', `unknown field ${extra[0]!.slice(0, 64)}`);
      if (!sessionId) return this.sendError('INVALID_FIELD', 'session_id must be a session id');
      if (msg.after !== undefined && !isSeq(msg.after))
        return this.sendError('INVALID_FIELD', 'after must be a non-negative integer', sessionId);
      void this.subscribe(sessionId, msg.after === undefined ? null : msg.after);
      return;
    }
    if (msg.type === 'unsubscribe') {
      const extra = Object.keys(msg).filter((k) => !['type', 'session_id'].includes(k));
      if (extra.length > 0) return this.sendError('INVALID_FIELD', `unknown field ${extra[0]!.slice(0, 64)}`);
      if (!sessionId) return this.sendError('INVALID_FIELD', 'session_id must be a session id');
      const sub = this.subs.get(sessionId);
      if (sub) this.drop(sub);
      return;
    }
    this.sendError('INVALID_FIELD', 'type must be "subscribe" or "unsubscribe"');
  }

  /** Token bucket: a burst, then a steady rate. */
  private takeToken(): boolean {
    const now = this.hub.clock.now();
    const { messagesPerSecond, messageBurst } = this.hub.limits;
    this.tokens = Math.min(messageBurst, this.tokens + ((now - this.refilledAt) / 1000) * messagesPerSecond);
    this.refilledAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /**
   * Authorizes, then replays and goes live. Without `after`, only what comes
   * next is sent (and, for a session that has ended, its final status).
   */
  async subscribe(sessionId: string, after: number | null): Promise<void> {
    const existing = this.subs.get(sessionId);
    if (existing?.auto) {
      // Followed since its first event: everything up to lastSeq is on this connection already.
      existing.auto = false;
      if (after !== null && after > existing.lastSeq) existing.lastSeq = after;
      return;
    }
    if (this.subs.has(sessionId) || this.pending.has(sessionId)) {
      return this.sendError('INVALID_STATE', 'already subscribed to this session; unsubscribe first', sessionId);
    }
    if (this.subs.size + this.pending.size >= this.hub.limits.maxSubscriptions) {
      return this.sendError(
        'RATE_LIMITED',
        `at most ${this.hub.limits.maxSubscriptions} subscriptions per connection`,
        sessionId,
      );
    }
    this.pending.add(sessionId);
    let row;
    try {
      // Another user's session answers exactly like one that does not exist.
      row = isId(sessionId, 'ses')
        ? await this.hub.sessions.find(sessionId, reachFor(this.grant.principal, 'user'))
        : undefined;
    } catch (err) {
      this.hub.logger.warn(
        { err: { message: (err as Error).message }, connection_id: this.id },
        'stream subscribe: session lookup failed',
      );
      return this.sendError('UNAVAILABLE', 'the session could not be read; try again', sessionId);
    } finally {
      this.pending.delete(sessionId);
    }
    if (this.closed) return;
    if (!row) {
      this.hub.notFound(this, sessionId);
      return this.sendError('NOT_FOUND', 'session not found', sessionId);
    }
    const lastSeq = Number(row.last_seq);
    const ended = row.status !== 'running';
    const sub: Subscription = {
      sessionId,
      ownerId: row.user_id,
      lastSeq: after ?? (ended ? Math.max(0, lastSeq - 1) : lastSeq),
      catchingUp: false,
      buffer: [],
      overflowed: false,
      lastSentAt: this.hub.clock.now(),
    };
    // Watch first, then read: an event published from now on is held, one stored before is read.
    this.subs.set(sessionId, sub);
    this.hub.watch(sessionId, this);
    await this.catchUp(sub);
    // Nothing more will come for a session that had ended (its final status was at or before `after`).
    if (ended && this.isCurrent(sub) && !sub.catchingUp && sub.lastSeq >= lastSeq) this.drop(sub);
  }

  private isCurrent(sub: Subscription): boolean {
    return !this.closed && this.subs.get(sub.sessionId) === sub;
  }

  /**
   * Replays stored events after `lastSeq` page by page, then the live events
   * held meanwhile; a held event that leaves a gap sends it back to the
   * database for another round. Ends live.
   */
  private async catchUp(sub: Subscription): Promise<void> {
    if (sub.catchingUp) return;
    sub.catchingUp = true;
    let replayed = 0;
    try {
      for (let round = 0; ; round++) {
        sub.overflowed = false;
        for (;;) {
          const rows = await this.hub.sessions.events(sub.sessionId, sub.lastSeq, REPLAY_PAGE);
          if (!this.isCurrent(sub)) return;
          for (const row of rows) {
            this.sendEvent(sub, presentEvent(row));
            replayed += 1;
            if (!this.isCurrent(sub)) return;
          }
          if (rows.length < REPLAY_PAGE) break;
        }
        if (sub.overflowed) continue;
        // From here to the end of the round nothing awaits: no live event can slip between.
        const held = sub.buffer;
        sub.buffer = [];
        let gapAt = -1;
        for (let i = 0; i < held.length; i++) {
          const event = held[i]!;
          if (event.seq <= sub.lastSeq) continue;
          if (event.seq > sub.lastSeq + 1 && round < MAX_GAP_ROUNDS) {
            gapAt = i;
            break;
          }
          this.sendEvent(sub, event);
          if (!this.isCurrent(sub)) return;
        }
        if (gapAt < 0) return;
        sub.buffer = held.slice(gapAt).concat(sub.buffer);
      }
    } catch (err) {
      this.hub.logger.warn(
        { err: { message: (err as Error).message }, connection_id: this.id, session_id: sub.sessionId },
        'stream replay failed',
      );
      if (this.isCurrent(sub)) {
        this.drop(sub);
        this.sendError('UNAVAILABLE', 'stored events could not be read; subscribe again with after', sub.sessionId);
      }
    } finally {
      sub.catchingUp = false;
      this.hub.metrics.replaySize.observe(replayed);
    }
  }

  /**
   * Subscriptions whose live feed has been quiet since `before`: candidates for
   * reconciliation (the bus may have lost what was published, e.g. during a Redis
   * outage). Each is returned with the last seq sent.
   */
  quietSince(before: number): Array<{ sessionId: string; lastSeq: number }> {
    const out: Array<{ sessionId: string; lastSeq: number }> = [];
    for (const sub of this.subs.values()) {
      if (!sub.catchingUp && sub.lastSentAt < before) out.push({ sessionId: sub.sessionId, lastSeq: sub.lastSeq });
    }
    return out;
  }

  /**
   * The database is ahead of what this subscription sent (`storedSeq`): replay
   * what is missing, the final status included, as after a gap. Otherwise only
   * notes that it was checked.
   */
  reconcile(sessionId: string, storedSeq: number): void {
    const sub = this.subs.get(sessionId);
    if (!sub || sub.catchingUp) return;
    sub.lastSentAt = this.hub.clock.now();
    if (storedSeq <= sub.lastSeq) return;
    this.hub.metrics.reconciled.inc();
    void this.catchUp(sub);
  }

  private sendEvent(sub: Subscription, event: SessionEvent, encoded?: Buffer): void {
    sub.lastSeq = event.seq;
    sub.lastSentAt = this.hub.clock.now();
    this.send(encoded ?? JSON.stringify(event), 'event');
    // A session's events end with its final status: nothing follows it.
    if (event.type === 'session.status' && FINAL.has(String(event.data.status)) && this.subs.get(sub.sessionId) === sub)
      this.drop(sub);
  }

  private drop(sub: Subscription): void {
    this.subs.delete(sub.sessionId);
    this.hub.unwatch(sub.sessionId, this);
  }

  private sendControl(message: Record<string, unknown>): void {
    this.send(JSON.stringify(message), 'control');
  }

  sendError(code: ErrorCode, message: string, sessionId?: string): void {
    this.sendControl({
      type: 'error',
      error: { code, message },
      ...(sessionId === undefined ? {} : { session_id: sessionId }),
    });
  }

  private send(text: string | Buffer, kind: 'event' | 'control'): void {
    if (this.closed || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(text, { binary: false });
    this.hub.metrics.sent(kind);
    if (this.ws.bufferedAmount > this.hub.limits.maxBufferedBytes) this.closeSlow();
  }

  /**
   * A peer that fell too far behind: 1013 (try again later) so it resumes with
   * `after`. Whatever is queued is dropped with the socket after a grace
   * period, which bounds what a peer that never reads can make us hold.
   */
  private closeSlow(): void {
    this.hub.metrics.slowConsumerCloses.inc();
    this.hub.logger.info(
      { connection_id: this.id, buffered: this.ws.bufferedAmount },
      'stream client too far behind: closing with 1013',
    );
    for (const sub of [...this.subs.values()]) this.drop(sub);
    this.close(CLOSE.TRY_AGAIN_LATER, 'too far behind; reconnect and resume with after');
    setTimeout(() => this.ws.terminate(), this.hub.limits.slowCloseGraceMs).unref();
  }
}
