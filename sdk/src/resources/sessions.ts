import type { KeenClient } from '../client.js';
import { paginate } from '../internal/paginate.js';
import type {
  CreditRefundRequest,
  CreditRefundResponse,
  Session,
  SessionEventsResponse,
  SessionListResponse,
  SessionStatus,
} from '../types.js';

/** Parameters of `sessions.list()`. */
export interface SessionListParams {
  /** 1 to 100 (default 20). */
  limit?: number;
  /** `next_cursor` of the previous page. */
  cursor?: string;
  status?: SessionStatus;
}

/** Parameters of `sessions.adminList()`: a page of everyone's sessions in reach. */
export interface AdminSessionListParams extends SessionListParams {
  /** Only this user's sessions: an id or an email (`NotFoundError` when not in reach). */
  user_id?: string;
}

/**
 * Your sessions: list, read, cancel, and the stored events of one; for administrators, everyone's in reach
 * (`admin*`) and refunds.
 */
export class Sessions {
  constructor(private readonly client: KeenClient) {}

  /** One page of your sessions, newest first. */
  list(params: SessionListParams = {}): Promise<SessionListResponse> {
    return this.client.request<SessionListResponse>('GET', '/v1/sessions', { query: { ...params } });
  }

  /** Every session (optionally of one status), fetching pages as you iterate. */
  all(params: Omit<SessionListParams, 'cursor'> = {}): AsyncGenerator<Session, void, undefined> {
    return paginate(async (cursor) => {
      const r = await this.list({ ...params, ...(cursor ? { cursor } : {}) });
      return { items: r.sessions, next: r.next_cursor };
    });
  }

  /** One session: status, phase, cost so far, final cost, timings. */
  async get(id: string, options: { signal?: AbortSignal } = {}): Promise<Session> {
    return (await this.client.request<{ session: Session }>('GET', `/v1/sessions/${encodeURIComponent(id)}`, options))
      .session;
  }

  /** Stops the agent; it is charged what it used and the rest of the reservation is released. */
  async cancel(id: string): Promise<Session> {
    return (
      await this.client.request<{ session: Session }>('POST', `/v1/sessions/${encodeURIComponent(id)}/cancel`, {
        body: {},
      })
    ).session;
  }

  /**
   * Refunds (part of) what a finished session was charged to its user
   * (`POST /v1/admin/sessions/:id/refund`; platform admins). `amount` defaults to
   * everything still refundable; never more than charged over all refunds (409
   * REFUND_EXCEEDS_CHARGE), never while the session runs (409 INVALID_STATE). The
   * request carries an idempotency key (a new one per call unless given): the
   * same key and body within 24 h answer the first refund.
   */
  refund(
    id: string,
    request: CreditRefundRequest,
    options: { idempotencyKey?: string; signal?: AbortSignal } = {},
  ): Promise<CreditRefundResponse> {
    return this.client.request<CreditRefundResponse>('POST', `/v1/admin/sessions/${encodeURIComponent(id)}/refund`, {
      body: request,
      ...options,
    });
  }

  /**
   * Administrators: one page of the sessions in reach (platform admins: all;
   * tenant admins: their tenant's), newest first, optionally of one user and status.
   */
  adminList(params: AdminSessionListParams = {}): Promise<SessionListResponse> {
    return this.client.request<SessionListResponse>('GET', '/v1/admin/sessions', { query: { ...params } });
  }

  /** Administrators: every session in reach (optionally of one user and status), page after page. */
  adminAll(params: Omit<AdminSessionListParams, 'cursor'> = {}): AsyncGenerator<Session, void, undefined> {
    return paginate(async (cursor) => {
      const r = await this.adminList({ ...params, ...(cursor ? { cursor } : {}) });
      return { items: r.sessions, next: r.next_cursor };
    });
  }

  /** Administrators: stops any session in reach, as `cancel` does one of yours. */
  async adminCancel(id: string): Promise<Session> {
    return (
      await this.client.request<{ session: Session }>('POST', `/v1/admin/sessions/${encodeURIComponent(id)}/cancel`, {
        body: {},
      })
    ).session;
  }

  /** Stored events after `after` (default 0), for replay; `client.stream()` follows them live. */
  events(
    id: string,
    params: { after?: number; limit?: number; signal?: AbortSignal } = {},
  ): Promise<SessionEventsResponse> {
    const { signal, ...query } = params;
    return this.client.request<SessionEventsResponse>('GET', `/v1/sessions/${encodeURIComponent(id)}/events`, {
      query,
      ...(signal ? { signal } : {}),
    });
  }
}
