import type { QuoteResponse, Session, SessionEvent } from '../../../schemas/types.gen.js';
import { presentBudgetStatus } from '../../credits/budget-present.js';
import { formatCredits } from '../../credits/money.js';
import type { AdmissionReason, Quote, SessionEvents, SessionPage } from '../../sessions/session-service.js';
import { presentSession, presentStarted, presentStoredEvent } from '../../sessions/presenters.js';
import type { SessionRow } from '../../storage/repos/sessions.js';
import type { PublicUrl } from './public-url.js';

/**
 * The session routes' presenters: SessionService returns rows, these turn them into the wire
 * JSON, with links built on the resolved public URL given at construction.
 */
export function sessionPresenters(publicUrl: PublicUrl) {
  const one = (row: SessionRow): Session => presentSession(row, publicUrl.get());
  return {
    session: one,
    page: (p: SessionPage): { sessions: Session[]; next_cursor: string | null } => ({
      sessions: p.sessions.map(one),
      next_cursor: p.nextCursor,
    }),
    events: (e: SessionEvents): { events: SessionEvent[]; last_seq: number; status: Session['status'] } => ({
      events: e.events.map(presentStoredEvent),
      last_seq: e.lastSeq,
      status: e.status,
    }),
    /** Execute's whole answer, stored with its Idempotency-Key (SessionServiceDeps.presentStarted). */
    started: (row: SessionRow, requestId: string) => presentStarted(row, publicUrl.get(), requestId),
  };
}

export type SessionPresenters = ReturnType<typeof sessionPresenters>;

type QuoteReason = QuoteResponse['admission']['reasons'][number];

/** One admission reason: credits in decimal, the wait in seconds as `retry_after` (absent when none). */
function presentReason(r: AdmissionReason): QuoteReason {
  switch (r.limit) {
    case 'concurrent_sessions':
      return { limit: r.limit, current: r.current, max: r.max, retry_after: r.retryAfterSeconds };
    case 'credits':
      return { limit: r.limit, current: formatCredits(r.current), max: formatCredits(r.max) };
    case 'budget':
      return {
        limit: r.limit,
        current: formatCredits(r.current),
        max: formatCredits(r.max),
        budget: presentBudgetStatus(r.budget),
        ...(r.retryAfterSeconds !== null ? { retry_after: r.retryAfterSeconds } : {}),
      };
  }
}

/** `POST /v1/agents/quote`: what execute would decide now, and why. */
export const presentQuote = (q: Quote): Omit<QuoteResponse, 'success'> => ({
  estimated_cost: formatCredits(q.estimate),
  reservation: formatCredits(q.reservation),
  available: formatCredits(q.available),
  budgets: q.budgets.map(presentBudgetStatus),
  admission: { allowed: q.reasons.length === 0, reasons: q.reasons.map(presentReason) },
});
