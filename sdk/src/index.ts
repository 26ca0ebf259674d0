export {
  KeenClient,
  type KeenClientOptions,
  type ApiKeyAuth,
  type TokenAuth,
  type RequestOptions,
  type LinesOptions,
  type ExecuteOptions,
  type FetchLike,
} from './client.js';
export {
  KeenError,
  AuthenticationError,
  AuthorizationError,
  ValidationError,
  InsufficientCreditsError,
  RateLimitError,
  NotFoundError,
  ConflictError,
  ServerError,
  ConnectionError,
  TimeoutError,
  errorFromResponse,
  type ErrorEnvelope,
  type KeenErrorInit,
} from './errors.js';
export type { StreamOptions, StreamAllOptions } from './stream.js';
export type { WebSocketConstructor, WebSocketLike } from './internal/websocket.js';
export type { Sessions, SessionListParams, AdminSessionListParams } from './resources/sessions.js';
export type { Credits, AdminTransactionsParams } from './resources/credits.js';
export type { ApiKeys } from './resources/api-keys.js';
export type { AdminKeys, AdminKeyListParams } from './resources/admin-keys.js';
export type { Users, UserListParams, UserTier } from './resources/users.js';
export type { Audit, AuditFilters, AuditListParams, AuditStreamParams, AuditHeartbeat } from './resources/audit.js';
export type { Tenants } from './resources/tenants.js';
export type { Usage, UsageParams, AdminUsageParams } from './resources/usage.js';
export type { Budgets, BudgetSubject } from './resources/budgets.js';
export type {
  Webhooks,
  WebhookEventTypes,
  WebhookCreateParams,
  WebhookUpdateParams,
  WebhookListParams,
  WebhookAdminListParams,
  WebhookDeliveryListParams,
} from './resources/webhooks.js';
export { verifyWebhook, WebhookVerificationError, type VerifyWebhookOptions, type WebhookHeaders } from './webhooks.js';
export type * from './types.js';
