import { GatewayError, toEnvelope } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { Metrics } from '../../metrics.js';
import { isUnavailableError } from '../../storage/database.js';
import { isStorageFullError } from '../../storage/disk.js';
import type { Middleware } from '../context.js';

/**
 * Renders every failure in the error envelope (docs/API.md, "Errors"). Known errors keep their
 * code; body-parser errors become INVALID_JSON or PAYLOAD_TOO_LARGE; a database
 * that cannot be reached becomes 503 UNAVAILABLE; a database or disk that is full
 * (SQLITE_FULL, Postgres 53100 disk_full, ENOSPC) becomes 507
 * INSUFFICIENT_STORAGE, nothing having been written (the transaction rolled
 * back), logged at warn at most every 10 s; anything else is logged with
 * its stack and the request id and answered as 500 INTERNAL with nothing of the
 * cause (no stack, no SQL, no secret) in the body.
 */
export function errorHandler(deps: { logger: Logger; metrics: Metrics }): Middleware {
  let fullLoggedAt = 0;
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.body === undefined && ctx.status === 404) {
        throw new GatewayError('NOT_FOUND', `no route for ${ctx.method} ${ctx.path}`);
      }
      if (ctx.body === undefined && (ctx.status === 405 || ctx.status === 501)) {
        const allow = ctx.response.get('Allow');
        throw new GatewayError('METHOD_NOT_ALLOWED', `${ctx.method} is not allowed on ${ctx.path}`, {
          headers: allow ? { Allow: allow } : {},
        });
      }
    } catch (thrown) {
      const err = classify(thrown, deps);
      if (err.code === 'INSUFFICIENT_STORAGE' && Date.now() - fullLoggedAt >= 10_000) {
        fullLoggedAt = Date.now();
        deps.logger.warn(
          {
            req_id: ctx.state.requestId,
            err: { message: (thrown as Error).message, code: (thrown as { code?: unknown }).code },
          },
          'storage is full: writes answer 507 until space is freed',
        );
      }
      if (err.status >= 500 && err.code === 'INTERNAL') {
        deps.logger.error({ req_id: ctx.state.requestId, err: thrown }, 'unhandled error');
      }
      ctx.status = err.status;
      for (const [k, v] of Object.entries(err.headers)) ctx.set(k, v);
      ctx.body = toEnvelope(err, ctx.state.requestId);
    }
  };
}

/** Freeing space takes an operator or a cleanup job, not a moment. */
const STORAGE_FULL_RETRY_AFTER_SECONDS = 30;

export function classify(thrown: unknown, deps: { logger: Logger; metrics: Metrics }): GatewayError {
  if (thrown instanceof GatewayError) return thrown;
  const e = thrown as { status?: number; statusCode?: number; type?: string; name?: string };
  const status = e?.status ?? e?.statusCode;
  if (status === 413 || e?.type === 'entity.too.large') {
    return new GatewayError('PAYLOAD_TOO_LARGE', 'request body is larger than the server accepts');
  }
  if (status === 400 && (e?.name === 'SyntaxError' || e?.type === 'entity.parse.failed')) {
    return new GatewayError('INVALID_JSON', 'request body is not valid JSON (an object is expected)');
  }
  if (status === 415) {
    return new GatewayError('UNSUPPORTED_MEDIA_TYPE', 'request body encoding or charset is not supported');
  }
  if (status === 400) return new GatewayError('INVALID_FIELD', 'request body could not be read');
  if (isStorageFullError(thrown)) {
    // Neither the path nor the database's message: only that there is no room, and when to try again.
    return new GatewayError(
      'INSUFFICIENT_STORAGE',
      'the gateway has no storage space left to save this request; nothing was saved, retry later',
      {
        headers: { 'Retry-After': String(STORAGE_FULL_RETRY_AFTER_SECONDS) },
      },
    );
  }
  if (isUnavailableError(thrown)) {
    deps.metrics.dbErrors.inc({ backend: 'any' });
    deps.logger.warn({ err: { message: (thrown as Error).message } }, 'dependency unavailable');
    return new GatewayError('UNAVAILABLE', 'a dependency of the gateway is unavailable; retry shortly', {
      headers: { 'Retry-After': '1' },
    });
  }
  return new GatewayError('INTERNAL', 'internal error');
}
