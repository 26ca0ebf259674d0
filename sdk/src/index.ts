export { KeenClient, type KeenClientOptions, type ApiKeyAuth, type TokenAuth, type RequestOptions, type LinesOptions, type ExecuteOptions, type FetchLike } from './client.js';
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
export type { Sessions, SessionListParams } from './resources/sessions.js';
export type { Credits } from './resources/credits.js';
export type { ApiKeys } from './resources/api-keys.js';
export type { Audit, AuditFilters, AuditStreamParams, AuditHeartbeat } from './resources/audit.js';
export type { Tenants } from './resources/tenants.js';
export type * from './types.js';
