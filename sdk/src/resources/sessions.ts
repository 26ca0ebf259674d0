import type { KeenClient } from '../client.js';
import { paginate } from '../internal/paginate.js';
import type { Session, SessionEventsResponse, SessionListResponse, SessionStatus } from '../types.js';

/** Parameters of `sessions.list()`. */
export interface SessionListParams {
  /** 1 to 100 (default 20). */
  limit?: number;
  /** `next_cursor` of the previous page. */
  cursor?: string;
  status?: SessionStatus;
}

/** Your sessions: list, read, cancel, and the stored events of one. */
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
    return (await this.client.request<{ session: Session }>('GET', `/v1/sessions/${encodeURIComponent(id)}`, options)).session;
  }

  /** Stops the agent; it is charged what it used and the rest of the reservation is released. */
  async cancel(id: string): Promise<Session> {
    return (await this.client.request<{ session: Session }>('POST', `/v1/sessions/${encodeURIComponent(id)}/cancel`, { body: {} })).session;
  }

  /** Stored events after `after` (default 0), for replay; `client.stream()` follows them live. */
  events(id: string, params: { after?: number; limit?: number; signal?: AbortSignal } = {}): Promise<SessionEventsResponse> {
    const { signal, ...query } = params;
    return this.client.request<SessionEventsResponse>('GET', `/v1/sessions/${encodeURIComponent(id)}/events`, { query, ...(signal ? { signal } : {}) });
  }
}
