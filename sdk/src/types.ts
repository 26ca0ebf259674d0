/**
 * Public types. The request and response shapes are generated from the daemon's
 * JSON Schemas (types.gen.ts); the stream's per-type event payloads are refined
 * here because the schema leaves `data` open.
 */
import type { Session, SessionEvent, TokenPair } from './types.gen.js';

export type {
  ApiKey,
  ApiKeyCreateRequest,
  ApiKeyCreatedResponse,
  CreditBalanceResponse,
  CreditTransaction,
  CreditTransactionListResponse,
  CreditPool,
  CreditPoolEntry,
  CreditPoolListResponse,
  ExecuteRequest,
  ExecuteResponse,
  MeResponse,
  QuoteResponse,
  Session,
  SessionEvent,
  SessionEventsResponse,
  SessionListResponse,
  Tenant,
  TenantCreditGrantRequest,
  TenantCreditGrantResponse,
  TenantCreditPoolResponse,
  TenantListResponse,
  TokenPair,
  User,
} from './types.gen.js';

/** running, completed, failed, cancelled, budget_exhausted, timed_out, interrupted. */
export type SessionStatus = Session['status'];

/** A scope an API key or token carries. */
export type Scope = 'agents:execute' | 'sessions:read' | 'credits:read' | 'keys:manage' | 'admin';

type Envelope = Omit<SessionEvent, 'type' | 'data'>;

/** `session.status`: `running` first; the final one carries `final_cost` and ends a session's stream. */
export interface SessionStatusEvent extends Envelope {
  type: 'session.status';
  data: { status: SessionStatus; final_cost?: number; reason?: string; summary?: string };
}
/** `agent.phase`: the agent entered a phase (EXPLORE, PLAN, BUILD, VERIFY...). */
export interface AgentPhaseEvent extends Envelope {
  type: 'agent.phase';
  data: { phase: string };
}
/** `agent.progress`: a progress message, with a percentage when the agent knows one. */
export interface AgentProgressEvent extends Envelope {
  type: 'agent.progress';
  data: { message: string; percent?: number };
}
/** `agent.log`: a log line of the agent. */
export interface AgentLogEvent extends Envelope {
  type: 'agent.log';
  data: { level: 'debug' | 'info' | 'warn' | 'error'; message: string };
}
/** `cost.update`: credits spent so far, and what the session holds. */
export interface CostUpdateEvent extends Envelope {
  type: 'cost.update';
  data: { cost_so_far: number; reserved: number };
}

/** One event of a session, as `client.stream()` yields it; `seq` rises by one per session. */
export type StreamEvent = SessionStatusEvent | AgentPhaseEvent | AgentProgressEvent | AgentLogEvent | CostUpdateEvent;

/** Called with every new token pair the client obtains, so the application can persist it. */
export type TokensListener = (tokens: TokenPair) => void | Promise<void>;
