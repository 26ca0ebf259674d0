/**
 * One error model end to end (docs/API.md, "Errors"). A `GatewayError` carries the
 * error's `type` and `code`; its HTTP status comes from one table. The error
 * middleware renders it into the envelope; anything else becomes 500 INTERNAL.
 */

import type { ErrorEnvelope as ErrorEnvelopeJson } from '../schemas/types.gen.js';

/** The error types of the envelope (schemas/api/ErrorEnvelope.json). */
export type ErrorType = ErrorEnvelopeJson['error']['type'];

/** Every error code the gateway answers with, its type and HTTP status. */
export const ERROR_CODES = {
  MISSING_TOKEN: ['AUTHENTICATION_ERROR', 401],
  INVALID_TOKEN_FORMAT: ['AUTHENTICATION_ERROR', 401],
  INVALID_TOKEN: ['AUTHENTICATION_ERROR', 401],
  TOKEN_EXPIRED: ['AUTHENTICATION_ERROR', 401],
  INVALID_CREDENTIALS: ['AUTHENTICATION_ERROR', 401],
  MFA_REQUIRED: ['AUTHENTICATION_ERROR', 401],
  INVALID_MFA: ['AUTHENTICATION_ERROR', 401],
  ACCOUNT_SUSPENDED: ['AUTHENTICATION_ERROR', 401],
  API_KEY_EXPIRED: ['AUTHENTICATION_ERROR', 401],
  API_KEY_REVOKED: ['AUTHENTICATION_ERROR', 401],
  REFRESH_TOKEN_REUSED: ['AUTHENTICATION_ERROR', 401],
  INSUFFICIENT_SCOPE: ['AUTHORIZATION_ERROR', 403],
  FORBIDDEN: ['AUTHORIZATION_ERROR', 403],
  INVALID_JSON: ['VALIDATION_ERROR', 400],
  INVALID_FIELD: ['VALIDATION_ERROR', 400],
  UNSUPPORTED_MEDIA_TYPE: ['VALIDATION_ERROR', 415],
  PAYLOAD_TOO_LARGE: ['VALIDATION_ERROR', 413],
  INSUFFICIENT_CREDITS: ['INSUFFICIENT_CREDITS', 402],
  /** A budget (of the API key, the user or the tenant) would be exceeded this period; details name which. */
  BUDGET_EXCEEDED: ['INSUFFICIENT_CREDITS', 402],
  RATE_LIMITED: ['RATE_LIMIT_ERROR', 429],
  CONCURRENCY_LIMIT: ['RATE_LIMIT_ERROR', 429],
  LOGIN_THROTTLED: ['RATE_LIMIT_ERROR', 429],
  NOT_FOUND: ['NOT_FOUND', 404],
  METHOD_NOT_ALLOWED: ['NOT_FOUND', 405],
  IDEMPOTENCY_KEY_REUSED: ['CONFLICT', 409],
  IDEMPOTENCY_KEY_IN_USE: ['CONFLICT', 409],
  ALREADY_EXISTS: ['CONFLICT', 409],
  INVALID_STATE: ['CONFLICT', 409],
  /** A refund that would give back more than the session was charged, across all its refunds (nothing left, or charged nothing). */
  REFUND_EXCEEDS_CHARGE: ['CONFLICT', 409],
  /** The user's sealed TOTP secret opens with no configured server secret: an administrator must reset MFA (not retryable). */
  MFA_UNAVAILABLE: ['CONFLICT', 409],
  INTERNAL: ['SYSTEM_ERROR', 500],
  UNAVAILABLE: ['SYSTEM_ERROR', 503],
  INSUFFICIENT_STORAGE: ['SYSTEM_ERROR', 507],
} as const satisfies Record<string, readonly [ErrorType, number]>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface GatewayErrorOptions {
  details?: unknown;
  /** Extra response headers (Retry-After, Allow, ...). */
  headers?: Record<string, string>;
  cause?: unknown;
}

export class GatewayError extends Error {
  readonly type: ErrorType;
  readonly status: number;
  readonly details: unknown;
  readonly headers: Record<string, string>;
  /** Koa convention: the message may be shown to the client. */
  readonly expose = true;

  constructor(
    readonly code: ErrorCode,
    message: string,
    options: GatewayErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatewayError';
    const [type, status] = ERROR_CODES[code];
    this.type = type;
    this.status = status;
    this.details = options.details ?? [];
    this.headers = options.headers ?? {};
  }
}

/** The response envelope of a failure (docs/API.md, schemas/api/ErrorEnvelope.json), its code one of ours. */
export type ErrorEnvelope = ErrorEnvelopeJson & { error: { code: ErrorCode } };

export function toEnvelope(err: GatewayError, requestId: string): ErrorEnvelope {
  return {
    success: false,
    error: { type: err.type, code: err.code, message: err.message, details: err.details },
    request_id: requestId,
  };
}

/** Convenience constructors for the common cases. */
export const notFound = (what = 'resource'): GatewayError => new GatewayError('NOT_FOUND', `${what} not found`);
export const invalidField = (message: string, details: unknown = []): GatewayError =>
  new GatewayError('INVALID_FIELD', message, { details });
export const unavailable = (message = 'service temporarily unavailable', cause?: unknown): GatewayError =>
  new GatewayError('UNAVAILABLE', message, { cause, headers: { 'Retry-After': '1' } });
