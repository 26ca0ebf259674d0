/**
 * Public types. The request and response shapes are generated from the daemon's
 * JSON Schemas (types.gen.ts); the stream's per-type event payloads are refined
 * here because the schema leaves `data` open.
 */
import type {
  Session,
  SessionEvent,
  TokenPair,
  WebhookApiKeyExpiringEvent,
  WebhookBudgetThresholdEvent,
  WebhookEndpointCreateRequest,
  WebhookLowBalanceEvent,
  WebhookPingEvent,
  WebhookSessionEvent,
} from './types.gen.js';

export type {
  AdminApiKeyCreateRequest,
  AdminUserCreateRequest,
  ApiKey,
  ApiKeyCreateRequest,
  ApiKeyCreatedResponse,
  ApiKeyListResponse,
  ApiKeyResponse,
  ApiKeyRolledResponse,
  ApiKeyUpdateRequest,
  AuditEntry,
  AuditListResponse,
  AuditVerifyResponse,
  Budget,
  BudgetListResponse,
  BudgetRequest,
  BudgetResponse,
  CreditAdjustRequest,
  CreditAdjustResponse,
  CreditBalance,
  CreditBalanceResponse,
  CreditGrantRequest,
  CreditGrantResponse,
  CreditMismatch,
  CreditRefundRequest,
  CreditRefundResponse,
  CreditTransaction,
  CreditTransactionListResponse,
  CreditPool,
  CreditPoolEntry,
  CreditPoolListResponse,
  CreditVerifyResponse,
  ExecuteRequest,
  ExecuteResponse,
  MeResponse,
  QuoteResponse,
  Session,
  SessionEvent,
  SessionEventsResponse,
  SessionListResponse,
  SetTierRequest,
  Tenant,
  TenantCreateRequest,
  TenantCreditGrantRequest,
  TenantCreditGrantResponse,
  TenantCreditPoolResponse,
  TenantListResponse,
  TenantResponse,
  TokenPair,
  UsageAdminQuery,
  UsageQuery,
  UsageReportResponse,
  UsageRow,
  UsageTotals,
  User,
  UserListResponse,
  UserResponse,
  WebhookApiKeyExpiringEvent,
  WebhookBudgetThresholdEvent,
  WebhookDelivery,
  WebhookDeliveryAttempt,
  WebhookDeliveryListQuery,
  WebhookDeliveryListResponse,
  WebhookDeliveryResponse,
  WebhookEndpoint,
  WebhookEndpointCreateRequest,
  WebhookEndpointCreatedResponse,
  WebhookEndpointListResponse,
  WebhookEndpointResponse,
  WebhookEndpointUpdateRequest,
  WebhookEventTypesResponse,
  WebhookLowBalanceEvent,
  WebhookPingEvent,
  WebhookSecretResponse,
  WebhookSecretRotateRequest,
  WebhookSecretRotatedResponse,
  WebhookSessionEvent,
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

/** An event type a webhook endpoint can subscribe to; `*` in `event_types` means all of them. */
export type WebhookEventType = Exclude<WebhookEndpointCreateRequest['event_types'][number], '*'>;

/** A webhook message, as `verifyWebhook()` returns it: narrow on `type`. */
export type WebhookMessage =
  | WebhookSessionEvent
  | WebhookLowBalanceEvent
  | WebhookBudgetThresholdEvent
  | WebhookApiKeyExpiringEvent
  | WebhookPingEvent;
