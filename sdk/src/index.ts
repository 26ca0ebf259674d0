export { KeenClient, type KeenClientOptions, type RequestOptions, type FetchLike } from './client.js';
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
} from './errors.js';
