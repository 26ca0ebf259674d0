import type { ExecuteResponse, Session, SessionEvent as SessionEventJson } from '../../schemas/types.gen.js';
import { iso } from '../clock.js';
import { formatCredits } from '../credits/money.js';
import type { SessionEventRow, SessionRow } from '../storage/repos/sessions.js';
import type { SessionEvent } from './bus.js';

/** The stream URL of a session: the public URL with a ws scheme. */
export function streamingUrl(publicUrl: string, sessionId: string): string {
  return `${publicUrl.replace(/^http/, 'ws')}/v1/stream?sessions=${sessionId}`;
}

/** A session as the API shows it; `publicUrl`: the gateway's resolved public URL (http/presenters/public-url.ts). */
export function presentSession(s: SessionRow, publicUrl: string): Session {
  return {
    id: s.id,
    session_id: s.id,
    user_id: s.user_id,
    status: s.status,
    current_phase: s.current_phase,
    streaming_url: streamingUrl(publicUrl, s.id),
    options: JSON.parse(s.options) as Session['options'],
    estimated_cost: formatCredits(s.estimated_cost),
    credit_reserved: formatCredits(s.reserved),
    cost_so_far: formatCredits(s.cost_so_far),
    final_cost: s.final_cost === null ? null : formatCredits(s.final_cost),
    usage: { input_tokens: s.input_tokens, output_tokens: s.output_tokens, web_searches: s.web_searches },
    end_reason: s.end_reason,
    sandboxed: s.sandboxed === null ? null : s.sandboxed === 1,
    summary: s.summary,
    last_seq: s.last_seq,
    created_at: iso(s.created_at),
    updated_at: iso(s.updated_at),
    ended_at: s.ended_at === null ? null : iso(s.ended_at),
    duration_ms: s.ended_at === null ? null : s.ended_at - s.created_at,
  };
}

export function presentEvent(e: SessionEventRow): SessionEvent {
  return {
    type: e.type,
    session_id: e.session_id,
    seq: e.seq,
    ts: iso(e.ts),
    data: JSON.parse(e.data) as Record<string, unknown>,
  };
}

/** A stored event as GET /v1/sessions/:id/events lists it (the stream sends the same fields). */
export function presentStoredEvent(e: SessionEventRow): SessionEventJson {
  return presentEvent(e) as SessionEventJson;
}

/**
 * What POST /v1/agents/execute answers, whole (with the envelope: a retry with the same
 * Idempotency-Key replays it as stored).
 */
export function presentStarted(row: SessionRow, publicUrl: string, requestId: string): ExecuteResponse {
  const session = presentSession(row, publicUrl);
  return {
    success: true,
    session: {
      id: session.id,
      session_id: session.session_id,
      status: session.status,
      current_phase: 'EXPLORE',
      streaming_url: session.streaming_url,
      estimated_cost: session.estimated_cost,
      created_at: session.created_at,
    },
    credit_reserved: formatCredits(row.reserved),
    request_id: requestId,
  };
}
