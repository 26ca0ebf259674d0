import type { Counter } from 'prom-client';
import { iso, type Clock } from '../clock.js';
import { newId } from '../ids.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { EVERYTHING, type Reach } from '../policies/index.js';
import type { Database, Queryable } from '../storage/database.js';
import type { AuditRepository } from '../storage/repos/audit.js';
import { canonicalJson } from './canonical.js';
import { entryHash, type AuditRecord } from './entry.js';
import { AuditQuery, matchesFilters, type AuditFilters } from './query.js';
import { redactDetails, redactField } from './redact.js';
import type { AuditEvent, AuditLogger } from './types.js';

export interface DatabaseAuditLoggerOptions {
  /** Opens the transaction of an append made without the caller's. */
  database: Database;
  /** The audit tables (built by the composition root). */
  audits: AuditRepository;
  clock: Clock;
  logger: Logger;
  metrics?: Metrics;
  /** How often aggregated denials of past minutes are written. Default 10 s. */
  denialFlushIntervalMs?: number;
  /** Distinct (action, actor) keys held per minute before new ones are pooled into one overflow entry. Default 10,000. */
  maxDenialKeys?: number;
  /** How often the live feed looks for entries committed elsewhere (another daemon, a caller's transaction). Default 1 s. */
  tailPollMs?: number;
}

/** A listener of the live feed; called once per committed entry, in seq order. */
export type AuditListener = (entry: AuditRecord) => void;

export interface AuditSubscribeOptions {
  /** Whose entries this listener may receive (daemon/policies `reachFor`). */
  reach: Reach;
  filters?: AuditFilters;
  /** Deliver entries after this seq; default: after the head at the time of the first poll. */
  afterSeq?: number;
}

export interface ChainHead {
  seq: number;
  hash: string;
}

const ACTIONS_MAX = 100;
const OUTCOMES = new Set(['success', 'failure', 'denied']);
const ACTOR_TYPES = new Set(['user', 'api_key', 'admin', 'system', 'anonymous']);

interface Subscriber {
  listener: AuditListener;
  reach: Reach;
  filters: AuditFilters;
  cursor: number | null;
}

interface DenialBucket {
  event: AuditEvent;
  minute: number;
  count: number;
  firstAt: number;
  lastAt: number;
}

/**
 * The audit log in the database: an append-only, hash-chained table.
 *
 * Each append locks the single chain-head row (`audit_head`; FOR UPDATE on
 * Postgres, the BEGIN IMMEDIATE write lock on SQLite) until its transaction
 * ends, so entries get seq 1, 2, 3, ... in commit order, with no gap and no
 * fork, however many daemons share the database. The unique seq column is the
 * backstop. Because the head stays locked until commit, an action that passes
 * its transaction should record its audit entry as its last write.
 */
export class DatabaseAuditLogger implements AuditLogger {
  private readonly database: Database;
  private readonly audits: AuditRepository;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly entriesTotal: Counter<'outcome'> | null;
  private readonly writeErrors: Counter<string> | null;
  private readonly query: AuditQuery;
  private readonly denialFlushIntervalMs: number;
  private readonly maxDenialKeys: number;
  private readonly tailPollMs: number;

  private readonly denials = new Map<string, DenialBucket>();
  /** The last denial write queued: each waits for the one before (see queueDenial). */
  private denialQueue: Promise<void> = Promise.resolve();
  private denialTimer: NodeJS.Timeout | null = null;
  private readonly pendingWrites = new Set<Promise<void>>();

  private readonly subscribers = new Set<Subscriber>();
  private tailTimer: NodeJS.Timeout | null = null;
  private pumping: Promise<void> | null = null;
  private pumpAgain = false;

  constructor(options: DatabaseAuditLoggerOptions) {
    this.database = options.database;
    this.audits = options.audits;
    this.clock = options.clock;
    this.logger = options.logger;
    this.query = new AuditQuery({ audits: options.audits });
    this.denialFlushIntervalMs = options.denialFlushIntervalMs ?? 10_000;
    this.maxDenialKeys = options.maxDenialKeys ?? 10_000;
    this.tailPollMs = options.tailPollMs ?? 1000;
    const m = options.metrics;
    this.entriesTotal = m
      ? ((m.registry.getSingleMetric('keen_audit_entries_total') as Counter<'outcome'> | undefined) ??
        m.counter('keen_audit_entries_total', 'Audit entries appended, by outcome.', ['outcome']))
      : null;
    this.writeErrors = m
      ? ((m.registry.getSingleMetric('keen_audit_write_errors_total') as Counter<string> | undefined) ??
        m.counter('keen_audit_write_errors_total', 'Audit entries that could not be written.'))
      : null;
  }

  /**
   * Appends one entry. With `trx` (a transaction from `Database.transaction()`)
   * the entry commits or rolls back with the caller's action; without it the
   * entry is written in its own transaction, so failures of a request that
   * itself fails (a refused login) are still recorded. Do not call it without
   * `trx` from inside an open transaction (on SQLite that would wait on itself).
   */
  async record(event: AuditEvent, trx?: Queryable): Promise<void> {
    const prepared = this.prepare(event);
    // In a caller's transaction the entry is appended just before it commits: the chain head's
    // lock (every append contends for it) is then held for the commit alone, not for the rest
    // of the caller's work. Its position in the chain is still inside that transaction.
    if (trx && this.database.beforeCommit(trx, async () => void (await this.appendPrepared(prepared, trx)))) return;
    await this.appendPrepared(prepared, trx);
  }

  /** Like {@link record}, but appended at once, and returns the stored entry (with its seq and hash). */
  async append(event: AuditEvent, trx?: Queryable): Promise<AuditRecord> {
    return this.appendPrepared(this.prepare(event), trx);
  }

  private async appendPrepared(
    prepared: ReturnType<DatabaseAuditLogger['prepare']>,
    trx?: Queryable,
  ): Promise<AuditRecord> {
    try {
      const entry = trx
        ? await this.appendIn(trx, prepared)
        : await this.database.transaction((t) => this.appendIn(t, prepared));
      this.entriesTotal?.inc({ outcome: entry.outcome });
      // Own transaction: committed now. A caller's transaction: the poll delivers it once it commits.
      if (!trx) this.schedulePump();
      return entry;
    } catch (err) {
      this.writeErrors?.inc();
      this.logger.error(
        { err: { message: (err as Error).message }, action: prepared.action },
        'audit entry could not be written',
      );
      throw err;
    }
  }

  /** The last appended seq and hash (seq 0 and 64 zeros before the first entry). */
  async head(db?: Queryable): Promise<ChainHead> {
    return this.audits.head(db);
  }

  /** Entries after `afterSeq`, oldest first, inside `reach`: how a tail follows entries written by other daemons. */
  listAfter(reach: Reach, afterSeq: number, filters: AuditFilters = {}, limit?: number): Promise<AuditRecord[]> {
    return this.query.listAfter(reach, afterSeq, filters, limit);
  }

  /**
   * Rate-limit and concurrency denials: counted in memory per (action, actor,
   * tenant) and minute, and written as one entry per key and minute with
   * `details.count`, so a flood of refused requests cannot flood the log.
   * Does not wait for the database; errors are logged.
   */
  recordDenialAggregated(event: AuditEvent): void {
    const now = this.clock.now();
    const minute = Math.floor(now / 60_000);
    let key = JSON.stringify([event.action, event.actor.type, event.actor.id, event.tenantId]);
    let bucket = this.denials.get(key);
    if (bucket && bucket.minute !== minute) {
      this.denials.delete(key);
      this.queueDenial(bucket);
      bucket = undefined;
    }
    if (!bucket && this.denials.size >= this.maxDenialKeys) {
      // Too many distinct actors this minute: pool the rest so memory stays bounded.
      key = JSON.stringify([event.action, '*overflow*']);
      bucket = this.denials.get(key);
      if (!bucket) {
        event = {
          action: event.action,
          outcome: 'denied',
          actor: { type: 'anonymous', id: null },
          tenantId: null,
          details: { overflow: true },
        };
      }
    }
    if (bucket) {
      bucket.count++;
      bucket.lastAt = now;
    } else {
      this.denials.set(key, { event, minute, count: 1, firstAt: now, lastAt: now });
    }
    if (!this.denialTimer) {
      this.denialTimer = setInterval(() => this.flushDue(), this.denialFlushIntervalMs);
      this.denialTimer.unref();
    }
  }

  /** Writes every pending aggregated denial now (shutdown, tests), and waits for writes in flight. */
  async flush(): Promise<void> {
    const buckets = [...this.denials.values()];
    this.denials.clear();
    for (const b of buckets) this.queueDenial(b);
    while (this.pendingWrites.size > 0) await Promise.all([...this.pendingWrites]);
  }

  /**
   * Live feed: `listener` receives each committed entry (never one whose
   * transaction rolled back), in seq order, including entries other daemons
   * wrote. Returns the function that unsubscribes.
   */
  subscribe(listener: AuditListener, options: AuditSubscribeOptions): () => void {
    const sub: Subscriber = {
      listener,
      reach: options.reach,
      filters: options.filters ?? {},
      cursor: options.afterSeq ?? null,
    };
    this.subscribers.add(sub);
    if (!this.tailTimer) {
      this.tailTimer = setInterval(() => this.schedulePump(), this.tailPollMs);
      this.tailTimer.unref();
    }
    this.schedulePump();
    return () => {
      this.subscribers.delete(sub);
      if (this.subscribers.size === 0 && this.tailTimer) {
        clearInterval(this.tailTimer);
        this.tailTimer = null;
      }
    };
  }

  /** Stops the timers and writes pending denials. Call before closing the database. */
  async close(): Promise<void> {
    if (this.denialTimer) clearInterval(this.denialTimer);
    this.denialTimer = null;
    if (this.tailTimer) clearInterval(this.tailTimer);
    this.tailTimer = null;
    this.subscribers.clear();
    await this.flush();
    await this.pumping?.catch(() => undefined);
  }

  // --- internals -------------------------------------------------------------

  private prepare(
    event: AuditEvent,
  ): Omit<AuditRecord, 'seq' | 'id' | 'ts' | 'prev_hash' | 'hash'> & { detailsText: string } {
    const details = redactDetails(event.details);
    const action = redactField(event.action, ACTIONS_MAX) ?? 'unknown';
    return {
      actor_type: ACTOR_TYPES.has(event.actor?.type) ? event.actor.type : 'anonymous',
      actor_id: redactField(event.actor?.id, 320),
      tenant_id: redactField(event.tenantId, 40),
      action,
      target_type: redactField(event.target?.type, 50),
      target_id: redactField(event.target?.id, 320),
      outcome: OUTCOMES.has(event.outcome) ? event.outcome : 'failure',
      ip: redactField(event.ip, 100),
      user_agent: redactField(event.userAgent, 500),
      request_id: redactField(event.requestId, 100),
      details,
      detailsText: canonicalJson(details),
    };
  }

  private async appendIn(db: Queryable, prepared: ReturnType<DatabaseAuditLogger['prepare']>): Promise<AuditRecord> {
    // Postgres: lock the head row until commit. SQLite: the transaction already holds the write lock.
    const head = await this.audits.lockHead(db);
    const ts = this.clock.now();
    const { detailsText, ...fields } = prepared;
    const unhashed: Omit<AuditRecord, 'hash'> = {
      seq: head.seq + 1,
      id: newId('aud', ts),
      ts,
      ...fields,
      prev_hash: head.hash,
    };
    const entry: AuditRecord = { ...unhashed, hash: entryHash(unhashed) };
    await this.audits.insertEntry(db, { ...entry, details: detailsText });
    // Compare-and-set: if a caller passed a handle that is not really a transaction, a concurrent append fails here instead of forking the chain.
    const moved = await this.audits.moveHead(db, head.seq, { seq: entry.seq, hash: entry.hash });
    if (!moved) throw new Error('audit chain head moved during an append');
    return entry;
  }

  private flushDue(): void {
    const minute = Math.floor(this.clock.now() / 60_000);
    for (const [key, b] of this.denials) {
      if (b.minute < minute) {
        this.denials.delete(key);
        this.queueDenial(b);
      }
    }
  }

  /** Denial entries are written one after another, in the order their buckets closed. */
  private queueDenial(b: DenialBucket): void {
    const write = this.denialQueue.then(() => this.writeDenial(b));
    this.denialQueue = write;
    this.track(write);
  }

  private async writeDenial(b: DenialBucket): Promise<void> {
    try {
      await this.record({
        ...b.event,
        outcome: 'denied',
        details: {
          ...(b.event.details ?? {}),
          count: b.count,
          window_start: iso(b.minute * 60_000),
          first_at: iso(b.firstAt),
          last_at: iso(b.lastAt),
        },
      });
    } catch (err) {
      // record() has logged it; a lost denial count must not crash the daemon.
      void err;
    }
  }

  private track(p: Promise<void>): void {
    this.pendingWrites.add(p);
    void p.finally(() => this.pendingWrites.delete(p));
  }

  private schedulePump(): void {
    if (this.subscribers.size === 0) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = this.pump()
      .catch((err: Error) => this.logger.warn({ err: { message: err.message } }, 'audit live feed poll failed'))
      .finally(() => {
        this.pumping = null;
        if (this.pumpAgain) {
          this.pumpAgain = false;
          this.schedulePump();
        }
      });
  }

  private async pump(): Promise<void> {
    const pageSize = 500;
    for (;;) {
      if (this.subscribers.size === 0) return;
      const subs = [...this.subscribers];
      if (subs.some((s) => s.cursor === null)) {
        const { seq } = await this.head();
        for (const s of subs) if (s.cursor === null) s.cursor = seq;
      }
      const from = Math.min(...subs.map((s) => s.cursor!));
      // Every entry here; each subscriber's reach and filters are applied below, before delivery.
      const entries = await this.query.listAfter(EVERYTHING, from, {}, pageSize);
      for (const entry of entries) {
        for (const s of subs) {
          if (!this.subscribers.has(s) || s.cursor! >= entry.seq) continue;
          s.cursor = entry.seq;
          if (!matchesFilters(entry, s.reach, s.filters)) continue;
          try {
            s.listener(entry);
          } catch (err) {
            this.logger.warn({ err: { message: (err as Error).message } }, 'audit listener threw');
          }
        }
      }
      if (entries.length < pageSize) return;
    }
  }
}
