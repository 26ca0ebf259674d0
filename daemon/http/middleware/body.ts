import { HttpMethodEnum, koaBody } from 'koa-body';
import { GatewayError } from '../../errors.js';
import type { Middleware } from '../context.js';

/** Methods whose body is read; any other method's body is ignored. */
const BODY_METHODS = [HttpMethodEnum.POST, HttpMethodEnum.PUT, HttpMethodEnum.PATCH, HttpMethodEnum.DELETE];
const IS_BODY_METHOD = new Set<string>(BODY_METHODS);

/**
 * JSON bodies only, bounded by `server.body_limit_bytes`. A body sent with any
 * other media type is refused (415) rather than silently read as empty.
 */
export function jsonBody(limitBytes: number): Middleware[] {
  const parser = koaBody({
    json: true,
    jsonLimit: limitBytes,
    jsonStrict: true,
    multipart: false,
    urlencoded: false,
    text: false,
    parsedMethods: BODY_METHODS,
  }) as unknown as Middleware;
  const mediaType: Middleware = async (ctx, next) => {
    // Methods whose bodies are never read go straight on (most requests: no parser frame).
    if (!IS_BODY_METHOD.has(ctx.method)) return next();
    const hasBody = Number(ctx.get('Content-Length') || 0) > 0 || ctx.get('Transfer-Encoding') !== '';
    if (hasBody && !ctx.is('application/json', '+json')) {
      throw new GatewayError('UNSUPPORTED_MEDIA_TYPE', 'request bodies must be application/json');
    }
    await parser(ctx, next);
  };
  return [mediaType];
}
