/** Agent sessions and their events (migration 0005_sessions). Money in micro-credits, times in epoch ms. */
export type SessionStatus =
  | 'running'
  | 'completed'
  | 'failed'
  | 'cancelled'
  | 'budget_exhausted'
  | 'timed_out'
  | 'interrupted';

export interface SessionTables {
  sessions: {
    id: string;
    user_id: string;
    tenant_id: string | null;
    status: SessionStatus;
    current_phase: string | null;
    /** The sanitized vision, for its owner to see; never sent anywhere but to the agent. */
    vision: string;
    /** JSON of the pure options the agent received. */
    options: string;
    webhook_url: string | null;
    reservation_id: string;
    reserved: number;
    estimated_cost: number;
    cost_so_far: number;
    final_cost: number | null;
    input_tokens: number;
    output_tokens: number;
    web_searches: number;
    /** The daemon instance running the agent. */
    owner: string;
    last_seq: number;
    cancel_requested_at: number | null;
    end_reason: string | null;
    summary: string | null;
    request_id: string | null;
    /** 1 when the agent runs inside the operating-system sandbox, 0 when not; null on sessions from before 0007. */
    sandboxed: number | null;
    /** The lease's fencing token: the owner's writes require it; ending the session elsewhere moves it on (0008). */
    lease_epoch: number;
    /** The API key that started the session; null when its owner signed in (0011). */
    api_key_id: string | null;
    created_at: number;
    updated_at: number;
    ended_at: number | null;
  };
  session_events: {
    session_id: string;
    seq: number;
    ts: number;
    type: string;
    /** JSON */
    data: string;
  };
}
