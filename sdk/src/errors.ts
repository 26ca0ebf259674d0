import type { Budget } from './types.gen.js';
import type { ErrorEnvelope } from './types.gen.js';

/** The error envelope every failing keen-gateway response carries (docs/API.md). */
export type { ErrorEnvelope };

/** What every error is built from. */
export interface KeenErrorInit {
  type: string;
  code: string;
  message: string;
  status?: number | null;
  requestId?: string | null;
  details?: unknown;
  /** The underlying failure (a network error), when there is one. */
  cause?: unknown;
}

/**
 * Base of every error the SDK throws: the gateway's `type` and `code`, the HTTP
 * `status` (null when no response came back), the `requestId` to quote to
 * support, and the envelope's `details`.
 */
export class KeenError extends Error {
  readonly type: string;
  readonly code: string;
  readonly status: number | null;
  readonly requestId: string | null;
  readonly details: unknown;

  constructor(init: KeenErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = new.target.name;
    this.type = init.type;
    this.code = init.code;
    this.status = init.status ?? null;
    this.requestId = init.requestId ?? null;
    this.details = init.details ?? null;
  }
}

/** 401: missing, malformed, expired or revoked credentials. */
export class AuthenticationError extends KeenError {}
/** 403: the credentials lack a scope or a role. */
export class AuthorizationError extends KeenError {}
/** 400 (and 413): the request does not match its schema; `details` lists the fields. */
export class ValidationError extends KeenError {}
/** 404: no such resource, or one that belongs to someone else. */
export class NotFoundError extends KeenError {}
/** 409: an idempotency key reused with another body, or a resource that already exists. */
export class ConflictError extends KeenError {}
/** 5xx: the gateway failed or is unavailable (its database, Redis). */
export class ServerError extends KeenError {}

const numberIn = (details: unknown, key: string): number | null => {
  const v = details && typeof details === 'object' ? (details as Record<string, unknown>)[key] : undefined;
  return typeof v === 'number' ? v : null;
};

/** 402: the run needs more credits than are available; amounts in credits. */
export class InsufficientCreditsError extends KeenError {
  /** What the run would reserve. */
  get required(): number | null {
    return numberIn(this.details, 'required');
  }
  /** What the user has available now. */
  get available(): number | null {
    return numberIn(this.details, 'available');
  }
  /** How many credits are missing: `required - available`. */
  get shortfall(): number | null {
    return numberIn(this.details, 'shortfall');
  }
  /**
   * On `code === 'BUDGET_EXCEEDED'`: the budget that refused (whose, its period,
   * what is left, `resets_at`); null for a plain shortage of credits.
   */
  get budget(): Budget | null {
    const b =
      this.details && typeof this.details === 'object' ? (this.details as { budget?: unknown }).budget : undefined;
    return b && typeof b === 'object' ? (b as Budget) : null;
  }
}

/** 429: a rate or concurrency limit; `retryAfter` is the server's Retry-After, in seconds. */
export class RateLimitError extends KeenError {
  retryAfter: number | null = null;
}

/** The gateway could not be reached, or the connection broke before an answer (refused, reset, DNS). */
export class ConnectionError extends KeenError {}
/** No answer within the client's `timeout`. */
export class TimeoutError extends KeenError {}

type ErrorClass = new (init: KeenErrorInit) => KeenError;

const BY_TYPE: Record<string, ErrorClass> = {
  AUTHENTICATION_ERROR: AuthenticationError,
  AUTHORIZATION_ERROR: AuthorizationError,
  VALIDATION_ERROR: ValidationError,
  INSUFFICIENT_CREDITS: InsufficientCreditsError,
  RATE_LIMIT_ERROR: RateLimitError,
  NOT_FOUND: NotFoundError,
  CONFLICT: ConflictError,
  SYSTEM_ERROR: ServerError,
};

/** When the body is not the gateway's error envelope (a proxy, a load balancer), the status decides. */
const BY_STATUS: Record<number, [string, ErrorClass]> = {
  400: ['VALIDATION_ERROR', ValidationError],
  401: ['AUTHENTICATION_ERROR', AuthenticationError],
  402: ['INSUFFICIENT_CREDITS', InsufficientCreditsError],
  403: ['AUTHORIZATION_ERROR', AuthorizationError],
  404: ['NOT_FOUND', NotFoundError],
  409: ['CONFLICT', ConflictError],
  413: ['VALIDATION_ERROR', ValidationError],
  429: ['RATE_LIMIT_ERROR', RateLimitError],
};

/**
 * Seconds from a Retry-After header: delta-seconds or an HTTP date
 * (RFC 9110 section 10.2.3); null when absent or unreadable.
 */
export function parseRetryAfter(value: string | null, now = Date.now()): number | null {
  if (value === null || value.trim() === '') return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return seconds >= 0 ? seconds : null;
  const date = Date.parse(value);
  return Number.isFinite(date) ? Math.max(0, Math.ceil((date - now) / 1000)) : null;
}

/** The one factory that turns a failed response into the right error class. */
export function errorFromResponse(
  status: number,
  body: unknown,
  headers: { get(name: string): string | null },
): KeenError {
  const env = body && typeof body === 'object' ? (body as Partial<ErrorEnvelope>) : null;
  const e = env?.error && typeof env.error === 'object' ? env.error : null;
  const fallback =
    BY_STATUS[status] ??
    (status >= 500
      ? (['SYSTEM_ERROR', ServerError] as [string, ErrorClass])
      : (['UNKNOWN_ERROR', KeenError] as [string, ErrorClass]));
  const type = typeof e?.type === 'string' ? e.type : fallback[0];
  const Cls = BY_TYPE[type] ?? fallback[1];
  const err = new Cls({
    type,
    code: typeof e?.code === 'string' ? e.code : `HTTP_${status}`,
    message: typeof e?.message === 'string' ? e.message : `HTTP ${status}`,
    status,
    requestId: (typeof env?.request_id === 'string' ? env.request_id : null) ?? headers.get('x-request-id'),
    details: e?.details ?? null,
  });
  if (err instanceof RateLimitError) err.retryAfter = parseRetryAfter(headers.get('retry-after'));
  return err;
}
