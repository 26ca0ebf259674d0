import { sql } from 'kysely';
import { reachFilter, type Reach } from '../policies/index.js';
import type { Database, Queryable } from '../storage/database.js';
import { rowToRecord, toJsonLine, type AuditRecord } from './entry.js';

/*
 * Whose entries a caller may see is its reach (daemon/policies): every entry (a
 * platform admin), one tenant's (a tenant admin), or one user's (what the user
 * did or was done to). Required by every read, and applied in the SQL where
 * clause, never by filtering rows afterwards.
 */

export interface AuditFilters {
  /**
   * An action (`auth.login`), or a resource prefix: `auth` or `auth.*` matches
   * every `auth.` action.
   */
  action?: string | null;
  /** Entries this actor did. */
  actorId?: string | null;
  /** Entries a user did or that were done to the user (actor, or target of type `user`). */
  userId?: string | null;
  /** Within every entry: one tenant's entries. Within a tenant's reach it can only narrow further. */
  tenantId?: string | null;
  outcome?: AuditRecord['outcome'] | null;
  /** Epoch ms, inclusive. */
  since?: number | null;
  /** Epoch ms, exclusive. */
  until?: number | null;
}

export interface AuditPageRequest {
  /** From a previous page's `nextCursor`. */
  cursor?: string | null;
  /** 1..{@link MAX_PAGE_SIZE}, default {@link DEFAULT_PAGE_SIZE}. */
  limit?: number | null;
  /** `desc` (newest first, the default) or `asc`. */
  order?: 'asc' | 'desc';
}

export interface AuditPage {
  entries: AuditRecord[];
  /** Pass back as `cursor` for the next page; null when this page is the last. */
  nextCursor: string | null;
}

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;

/** Thrown for a malformed cursor or filter; the HTTP layer maps it to a 400. */
export class AuditQueryError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = 'AuditQueryError';
  }
}

/** Reads of the audit log: filtered pages, incremental reads by seq, and JSON Lines export. */
export class AuditQuery {
  private readonly db: Queryable;

  constructor(deps: { database: Database } | { db: Queryable }) {
    this.db = 'database' in deps ? deps.database.db : deps.db;
  }

  /** One page of entries matching `filters`, inside `reach`, by seq. */
  async list(reach: Reach, filters: AuditFilters = {}, page: AuditPageRequest = {}): Promise<AuditPage> {
    const order = page.order ?? 'desc';
    const limit = clampLimit(page.limit);
    const cursor = parseCursor(page.cursor);
    let q = this.filtered(reach, filters);
    if (cursor !== null) q = q.where('seq', order === 'desc' ? '<' : '>', cursor);
    const rows = await q.orderBy('seq', order).limit(limit + 1).execute();
    const more = rows.length > limit;
    const entries = rows.slice(0, limit).map(rowToRecord);
    const last = entries[entries.length - 1];
    return { entries, nextCursor: more && last ? String(last.seq) : null };
  }

  /** Entries with seq greater than `afterSeq`, oldest first: for tailing by polling. */
  async listAfter(reach: Reach, afterSeq: number, filters: AuditFilters = {}, limit = MAX_PAGE_SIZE): Promise<AuditRecord[]> {
    const rows = await this.filtered(reach, filters)
      .where('seq', '>', afterSeq)
      .orderBy('seq', 'asc')
      .limit(clampLimit(limit))
      .execute();
    return rows.map(rowToRecord);
  }

  /**
   * Every matching entry as JSON Lines (one string per entry, newline included),
   * oldest first, read in pages of `pageSize` so memory stays bounded whatever
   * the range.
   */
  async *exportJsonLines(reach: Reach, filters: AuditFilters = {}, options: { pageSize?: number } = {}): AsyncGenerator<string> {
    const pageSize = clampLimit(options.pageSize ?? MAX_PAGE_SIZE);
    let after = 0;
    for (;;) {
      const rows = await this.filtered(reach, filters).where('seq', '>', after).orderBy('seq', 'asc').limit(pageSize).execute();
      for (const row of rows) yield toJsonLine(rowToRecord(row));
      if (rows.length < pageSize) return;
      after = Number(rows[rows.length - 1]!.seq);
    }
  }

  private filtered(reach: Reach, filters: AuditFilters) {
    let q = this.db.selectFrom('audit_log').selectAll();
    const f = reachFilter(reach);
    if (f?.column === 'tenant_id') q = q.where('tenant_id', '=', f.value);
    else if (f) {
      const userId = f.value;
      q = q.where((eb) => eb.or([eb('actor_id', '=', userId), eb.and([eb('target_type', '=', 'user'), eb('target_id', '=', userId)])]));
    }
    if (filters.tenantId) q = q.where('tenant_id', '=', filters.tenantId);
    if (filters.action) {
      const action = filters.action.trim();
      const prefix = action.endsWith('.*') ? action.slice(0, -2) : action.includes('.') ? null : action;
      if (prefix !== null) {
        if (prefix === '') throw new AuditQueryError('action', 'action prefix is empty');
        // LIKE with an explicit escape character: the same on both dialects (a range would depend on Postgres's collation).
        const pattern = `${prefix.replace(/[!%_]/g, (c) => `!${c}`)}.%`;
        q = q.where(sql<boolean>`${sql.ref('action')} like ${pattern} escape '!'`);
      } else {
        q = q.where('action', '=', action);
      }
    }
    if (filters.actorId) q = q.where('actor_id', '=', filters.actorId);
    if (filters.userId) {
      const userId = filters.userId;
      q = q.where((eb) => eb.or([eb('actor_id', '=', userId), eb.and([eb('target_type', '=', 'user'), eb('target_id', '=', userId)])]));
    }
    if (filters.outcome) q = q.where('outcome', '=', filters.outcome);
    if (filters.since !== undefined && filters.since !== null) q = q.where('ts', '>=', checkTime('since', filters.since));
    if (filters.until !== undefined && filters.until !== null) q = q.where('ts', '<', checkTime('until', filters.until));
    return q;
  }
}

function clampLimit(limit: number | null | undefined): number {
  if (limit === undefined || limit === null) return DEFAULT_PAGE_SIZE;
  if (!Number.isFinite(limit)) throw new AuditQueryError('limit', 'limit must be a number');
  return Math.min(MAX_PAGE_SIZE, Math.max(1, Math.trunc(limit)));
}

function parseCursor(cursor: string | null | undefined): number | null {
  if (cursor === undefined || cursor === null || cursor === '') return null;
  if (!/^\d{1,15}$/.test(cursor)) throw new AuditQueryError('cursor', 'cursor is not valid');
  return Number(cursor);
}

function checkTime(field: string, ms: number): number {
  if (!Number.isSafeInteger(ms)) throw new AuditQueryError(field, `${field} must be epoch milliseconds`);
  return ms;
}

/**
 * The same predicate as the SQL of {@link AuditQuery}, for entries already in
 * memory (the live feed). Keep the two in step.
 */
export function matchesFilters(entry: AuditRecord, reach: Reach, filters: AuditFilters = {}): boolean {
  const f = reachFilter(reach);
  if (f?.column === 'tenant_id' && entry.tenant_id !== f.value) return false;
  if (f?.column === 'user_id' && entry.actor_id !== f.value && !(entry.target_type === 'user' && entry.target_id === f.value)) return false;
  if (filters.tenantId && entry.tenant_id !== filters.tenantId) return false;
  if (filters.action) {
    const action = filters.action.trim();
    const prefix = action.endsWith('.*') ? action.slice(0, -2) : action.includes('.') ? null : action;
    if (prefix !== null ? !entry.action.startsWith(`${prefix}.`) : entry.action !== action) return false;
  }
  if (filters.actorId && entry.actor_id !== filters.actorId) return false;
  if (filters.userId && entry.actor_id !== filters.userId && !(entry.target_type === 'user' && entry.target_id === filters.userId)) return false;
  if (filters.outcome && entry.outcome !== filters.outcome) return false;
  if (filters.since !== undefined && filters.since !== null && entry.ts < filters.since) return false;
  if (filters.until !== undefined && filters.until !== null && entry.ts >= filters.until) return false;
  return true;
}
