import { HttpMethodEnum, koaBody } from 'koa-body';
import { GatewayError } from '../../errors.js';
import type { Middleware } from '../context.js';

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
    parsedMethods: [HttpMethodEnum.POST, HttpMethodEnum.PUT, HttpMethodEnum.PATCH, HttpMethodEnum.DELETE],
  }) as unknown as Middleware;
  const mediaType: Middleware = async (ctx, next) => {
    const hasBody = Number(ctx.get('Content-Length') || 0) > 0 || ctx.get('Transfer-Encoding') !== '';
    if (hasBody && ['POST', 'PUT', 'PATCH', 'DELETE'].includes(ctx.method) && !ctx.is('application/json', '+json')) {
      throw new GatewayError('UNSUPPORTED_MEDIA_TYPE', 'request bodies must be application/json');
    }
    await next();
  };
  return [mediaType, parser];
}
