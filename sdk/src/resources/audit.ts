import type { KeenClient } from '../client.js';
import { paginate } from '../internal/paginate.js';
import type { AuditEntry, AuditExportQuery, AuditListResponse, AuditVerifyResponse } from '../types.gen.js';

/** Filters of the audit endpoints (generated from schemas/api/AuditExportQuery.json). */
export type AuditFilters = AuditExportQuery;

/** Parameters of `audit.stream()` (schemas/api/AuditStreamQuery.json). */
export interface AuditStreamParams extends AuditFilters {
  /** Deliver the entries after this seq (default: the head of the log when the stream opens). */
  after_seq?: number;
}

/** Parameters of `audit.list()` (schemas/api/AuditListQuery.json). */
export interface AuditListParams extends AuditFilters {
  /** 1 to 500 (default 50). */
  limit?: number;
  /** `next_cursor` of the previous page. */
  cursor?: string;
  /** By seq: newest first (`desc`, the default) or oldest first. */
  order?: 'asc' | 'desc';
}

/** A line of the live feed that is not an entry: sent when the feed opens and after every 15 s of quiet. */
export interface AuditHeartbeat {
  type: 'heartbeat';
  /** Where the feed is: the seq of the last entry it delivered, or the one it started after. */
  after_seq: number;
}

/**
 * The audit log as JSON Lines, for administrators (an API key or token with
 * the `admin` scope; a tenant admin sees its own tenant only).
 *
 * An entry is `AuditEntry` of schemas/api/AuditEntry.json (`seq`, `id`, `ts`,
 * `action`, `outcome`, `details`, `prev_hash`, `hash`...), exactly as the
 * gateway wrote it (the default `T`).
 */
export class Audit {
  constructor(private readonly client: KeenClient) {}

  /** One page of the entries matching `params` (`GET /v1/admin/audit`), newest first unless `order: 'asc'`. */
  list(params: AuditListParams = {}, options: { signal?: AbortSignal } = {}): Promise<AuditListResponse> {
    return this.client.request<AuditListResponse>('GET', '/v1/admin/audit', { query: { ...params }, ...options });
  }

  /** Every entry matching `params`, page after page (`export` streams them in one response instead). */
  all(params: Omit<AuditListParams, 'cursor'> = {}): AsyncGenerator<AuditEntry, void, undefined> {
    return paginate(async (cursor) => {
      const r = await this.list({ ...params, ...(cursor ? { cursor } : {}) });
      return { items: r.entries, next: r.next_cursor };
    });
  }

  /**
   * Recomputes the hash chain and checks the signed checkpoints
   * (`POST /v1/admin/audit/verify`; platform admins). A broken chain is an
   * answer, not an error: check `ok` and `first_bad`.
   */
  verify(options: { signal?: AbortSignal } = {}): Promise<AuditVerifyResponse> {
    return this.client.request<AuditVerifyResponse>('POST', '/v1/admin/audit/verify', { body: {}, ...options });
  }

  /**
   * The entries matching `filters`, oldest first, read as the gateway streams
   * them (`GET /v1/admin/audit/export`); ends after the last one.
   *
   * ```ts
   * for await (const e of client.audit.export({ since: '2026-01-01T00:00:00Z' })) out.write(`${JSON.stringify(e)}\n`);
   * ```
   */
  export<T extends object = AuditEntry>(
    filters: AuditFilters = {},
    options: { signal?: AbortSignal } = {},
  ): AsyncGenerator<T, void, undefined> {
    return this.client.requestLines<T>('/v1/admin/audit/export', {
      query: { ...filters },
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }

  /**
   * The live feed (`GET /v1/admin/audit/stream`): each matching entry as it
   * commits, after `after_seq`, interleaved with heartbeat lines; it runs until
   * `options.signal` aborts or the connection ends. It does not reconnect: resume
   * with `after_seq` set to the last entry's `seq` (or heartbeat's `after_seq`).
   */
  stream<T extends object = AuditEntry>(
    params: AuditStreamParams = {},
    options: { signal?: AbortSignal } = {},
  ): AsyncGenerator<T | AuditHeartbeat, void, undefined> {
    return this.client.requestLines<T | AuditHeartbeat>('/v1/admin/audit/stream', {
      query: { ...params },
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }
}
