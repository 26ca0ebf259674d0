import { sql } from 'kysely';
import { reachFilter, type Reach } from '../policies/index.js';
import { actionMatch, type AuditFilters, type AuditRepository } from '../storage/repos/audit.js';
import { rowToRecord, toJsonLine, type AuditRecord } from './entry.js';

/*
 * Whose entries a caller may see is its reach (daemon/policies): every entry (a
 * platform admin), one tenant's (a tenant admin), or one user's (what the user
 * did or was done to). Required by every read, and applied in the SQL where
 * clause, never by filtering rows afterwards.
 */

export type { AuditFilters };

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
  private readonly audits: AuditRepository;

  constructor(deps: { audits: AuditRepository }) {
    this.audits = deps.audits;
  }

  /** One page of entries matching `filters`, inside `reach`, by seq. */
  async list(reach: Reach, filters: AuditFilters = {}, page: AuditPageRequest = {}): Promise<AuditPage> {
    const order = page.order ?? 'desc';
    const limit = clampLimit(page.limit);
    const cursor = parseCursor(page.cursor);
    checkFilters(filters);
    const rows = await this.audits.page(reach, filters, { cursor, order, limit: limit + 1 });
    const more = rows.length > limit;
    const entries = rows.slice(0, limit).map(rowToRecord);
    const last = entries[entries.length - 1];
    return { entries, nextCursor: more && last ? String(last.seq) : null };
  }

  /** Entries with seq greater than `afterSeq`, oldest first: for tailing by polling. */
  async listAfter(
    reach: Reach,
    afterSeq: number,
    filters: AuditFilters = {},
    limit = MAX_PAGE_SIZE,
  ): Promise<AuditRecord[]> {
    checkFilters(filters);
    const rows = await this.audits.after(reach, filters, afterSeq, clampLimit(limit));
    return rows.map(rowToRecord);
  }

  /**
   * Every matching entry as JSON Lines (one string per entry, newline included),
   * oldest first, read in pages of `pageSize` so memory stays bounded whatever
   * the range.
   *
   * Each page walks the log in seq order from the last seq sent; the time range
   * only filters (`+ts`: an expression, so neither dialect picks the ts index,
   * which would make every page sort the whole rest of the range). The export
   * thus reads the log once, however many pages: linear, not quadratic.
   */
  async *exportJsonLines(
    reach: Reach,
    filters: AuditFilters = {},
    options: { pageSize?: number } = {},
  ): AsyncGenerator<string> {
    const pageSize = clampLimit(options.pageSize ?? MAX_PAGE_SIZE);
    checkFilters(filters);
    const { since, until, ...others } = filters;
    const ts = sql<number>`+${sql.ref('ts')}`;
    let after = 0;
    for (;;) {
      let q = this.filtered(reach, others).where('seq', '>', after);
      if (since !== undefined && since !== null) q = q.where(ts, '>=', since);
      if (until !== undefined && until !== null) q = q.where(ts, '<', until);
      const rows = await q.orderBy('seq', 'asc').limit(pageSize).execute();
      for (const row of rows) yield toJsonLine(rowToRecord(row));
      if (rows.length < pageSize) return;
      after = Number(rows[rows.length - 1]!.seq);
    }
  }

  /** The entries of `reach` matching `filters` (the query lives in AuditRepository); refuses malformed filters. */
  private filtered(reach: Reach, filters: AuditFilters) {
    checkFilters(filters);
    return this.audits.filtered(reach, filters);
  }
}

/** Refuses what the SQL must never see: an empty action prefix, times that are not epoch milliseconds. */
function checkFilters(filters: AuditFilters): void {
  const match = filters.action ? actionMatch(filters.action) : null;
  if (match && 'prefix' in match && match.prefix === '') throw new AuditQueryError('action', 'action prefix is empty');
  if (filters.since !== undefined && filters.since !== null) checkTime('since', filters.since);
  if (filters.until !== undefined && filters.until !== null) checkTime('until', filters.until);
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
 * The same predicate as the SQL of `AuditRepository.filtered`, for entries
 * already in memory (the live feed). Keep the two in step.
 */
export function matchesFilters(entry: AuditRecord, reach: Reach, filters: AuditFilters = {}): boolean {
  const f = reachFilter(reach);
  if (f?.column === 'tenant_id' && entry.tenant_id !== f.value) return false;
  if (
    f?.column === 'user_id' &&
    entry.actor_id !== f.value &&
    !(entry.target_type === 'user' && entry.target_id === f.value)
  )
    return false;
  if (filters.tenantId && entry.tenant_id !== filters.tenantId) return false;
  if (filters.action) {
    const match = actionMatch(filters.action);
    if ('prefix' in match ? !entry.action.startsWith(`${match.prefix}.`) : entry.action !== match.exact) return false;
  }
  if (filters.actorId && entry.actor_id !== filters.actorId) return false;
  if (
    filters.userId &&
    entry.actor_id !== filters.userId &&
    !(entry.target_type === 'user' && entry.target_id === filters.userId)
  )
    return false;
  if (filters.outcome && entry.outcome !== filters.outcome) return false;
  if (filters.since !== undefined && filters.since !== null && entry.ts < filters.since) return false;
  if (filters.until !== undefined && filters.until !== null && entry.ts >= filters.until) return false;
  return true;
}
