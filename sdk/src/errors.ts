/** The error envelope every failing keen-gateway response carries. */
export interface ErrorEnvelope {
  success: false;
  error: { type: string; code: string; message: string; details: unknown };
  request_id: string;
}

/** Base of every error the SDK throws: `type`, `code`, HTTP `status` and the `requestId` to quote to support. */
export class KeenError extends Error {
  readonly type: string;
  readonly code: string;
  readonly status: number | null;
  readonly requestId: string | null;
  readonly details: unknown;

  constructor(init: { type: string; code: string; message: string; status?: number | null; requestId?: string | null; details?: unknown }) {
    super(init.message);
    this.name = new.target.name;
    this.type = init.type;
    this.code = init.code;
    this.status = init.status ?? null;
    this.requestId = init.requestId ?? null;
    this.details = init.details ?? null;
  }
}

export class AuthenticationError extends KeenError {}
export class AuthorizationError extends KeenError {}
export class ValidationError extends KeenError {}
export class NotFoundError extends KeenError {}
export class ConflictError extends KeenError {}
export class ServerError extends KeenError {}

/** 402: `required`, `available` and `shortfall` in credits. */
export class InsufficientCreditsError extends KeenError {
  get required(): number | null {
    return (this.details as { required?: number } | null)?.required ?? null;
  }
  get available(): number | null {
    return (this.details as { available?: number } | null)?.available ?? null;
  }
  get shortfall(): number | null {
    return (this.details as { shortfall?: number } | null)?.shortfall ?? null;
  }
}

/** 429: `retryAfter` in seconds, from the Retry-After header. */
export class RateLimitError extends KeenError {
  retryAfter: number | null = null;
}

/** The daemon could not be reached (refused, reset, DNS). */
export class ConnectionError extends KeenError {}
/** No answer within the client's timeout. */
export class TimeoutError extends KeenError {}

const BY_TYPE: Record<string, new (init: ConstructorParameters<typeof KeenError>[0]) => KeenError> = {
  AUTHENTICATION_ERROR: AuthenticationError,
  AUTHORIZATION_ERROR: AuthorizationError,
  VALIDATION_ERROR: ValidationError,
  INSUFFICIENT_CREDITS: InsufficientCreditsError,
  RATE_LIMIT_ERROR: RateLimitError,
  NOT_FOUND: NotFoundError,
  CONFLICT: ConflictError,
  SYSTEM_ERROR: ServerError,
};

/** The one factory that turns a failed response into the right error class. */
export function errorFromResponse(status: number, body: unknown, headers: { get(name: string): string | null }): KeenError {
  const env = body as Partial<ErrorEnvelope> | null;
  const e = env && typeof env === 'object' && env.error && typeof env.error === 'object' ? env.error : null;
  const type = e?.type ?? (status >= 500 ? 'SYSTEM_ERROR' : 'UNKNOWN_ERROR');
  const Cls = BY_TYPE[type] ?? (status >= 500 ? ServerError : KeenError);
  const err = new Cls({
    type,
    code: e?.code ?? `HTTP_${status}`,
    message: e?.message ?? `HTTP ${status}`,
    status,
    requestId: env?.request_id ?? headers.get('x-request-id'),
    details: e?.details ?? null,
  });
  if (err instanceof RateLimitError) {
    const ra = Number(headers.get('retry-after'));
    err.retryAfter = Number.isFinite(ra) && ra >= 0 ? ra : null;
  }
  return err;
}
