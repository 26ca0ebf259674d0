import type { IncomingMessage } from 'node:http';
import type { AuthService, ClientInfo, CredentialGrant } from '../auth/auth-service.js';
import type { Principal, Scope } from '../auth/principal.js';
import { GatewayError, toEnvelope, type ErrorEnvelope } from '../errors.js';
import { newId } from '../ids.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { assertRoutePolicy, assertScope, type RoutePolicy } from '../policies/index.js';
import { ClientIpResolver } from './client-ip.js';
import { classify } from './middleware/errors.js';

/**
 * The edge every request crosses, HTTP (Koa middleware) and the WebSocket
 * upgrade (daemon/ws/stream-server.ts) alike: its request id, its client
 * address, who it is (AuthService), what it may do (daemon/policies), and the
 * JSON envelope a refusal is answered with. Nothing here knows Koa.
 */

/** An incoming `X-Request-Id` is kept when it looks like an id: 8 to 128 of `A-Z a-z 0-9 . _ : -`, no leading sign. */
const INCOMING_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$/;

/** The request's id: a well-formed incoming `X-Request-Id`, anything else replaced by a new `req_...`. */
export function requestIdOf(incoming: string | string[] | undefined): string {
  return typeof incoming === 'string' && INCOMING_ID.test(incoming) ? incoming : newId('req');
}

/** The `User-Agent` as the audit trail keeps it: at most 256 characters, null when absent. */
export function userAgentOf(value: string | string[] | undefined): string | null {
  const ua = Array.isArray(value) ? value[0] : value;
  return ua ? ua.slice(0, 256) : null;
}

/** What a route or the stream may need of its caller, from the route spec or the stream's fixed needs. */
export interface Access {
  /** `bearer`: a user's access token only, never an API key. */
  auth: 'any' | 'bearer';
  scope?: Scope;
  policy?: RoutePolicy;
}

/** Throws the 403 a caller without `access` gets: a token type, then the scope, then the policy. */
export function authorize(principal: Principal, access: Access): void {
  if (access.auth === 'bearer' && principal.via !== 'jwt') {
    throw new GatewayError('FORBIDDEN', "this endpoint needs a user's access token (Bearer), not an API key");
  }
  if (access.scope) assertScope(principal, access.scope);
  if (access.policy) assertRoutePolicy(principal, access.policy);
}

/** A refusal as the edge answers it: status, extra headers and the JSON error envelope (docs/API.md, "Errors"). */
export interface Refusal {
  error: GatewayError;
  status: number;
  headers: Record<string, string>;
  body: ErrorEnvelope;
}

/**
 * The edge of one daemon. HTTP builds its request context with the same rules
 * (daemon/http/middleware/request-context.ts, authenticate.ts, errors.ts); the
 * stream asks this object for them.
 */
export class Edge {
  private readonly clientIp: ClientIpResolver;

  constructor(
    private readonly deps: { auth: AuthService; trustedProxies: string[]; logger: Logger; metrics: Metrics },
  ) {
    this.clientIp = new ClientIpResolver(deps.trustedProxies);
  }

  /** Request id, client address (trusted-proxy rule) and user agent of a raw request. */
  context(req: IncomingMessage): ClientInfo {
    return {
      requestId: requestIdOf(req.headers['x-request-id']),
      ip: this.clientIp.resolve(req.socket.remoteAddress, req.headers['x-forwarded-for']),
      userAgent: userAgentOf(req.headers['user-agent']),
    };
  }

  /**
   * Authenticates an `Authorization` value and keeps what can end it (AuthService.grant):
   * a 401 GatewayError for a bad credential.
   */
  grant(authorization: string | undefined): Promise<CredentialGrant> {
    return this.deps.auth.grant(authorization);
  }

  /** The grant of a principal a route's guard already authenticated from `authorization` (AuthService.grantOf). */
  grantOf(principal: Principal, authorization: string): Promise<CredentialGrant> {
    return this.deps.auth.grantOf(principal, authorization);
  }

  /** Why a grant no longer holds (the code a 401 would carry), or null while it does. */
  grantEnded(grant: CredentialGrant) {
    return this.deps.auth.grantEnded(grant);
  }

  authorize(principal: Principal, access: Access): void {
    authorize(principal, access);
  }

  /**
   * What anything thrown at the edge is answered with, classified exactly as the HTTP
   * error handler does (a database away is 503 UNAVAILABLE, anything unknown 500 INTERNAL).
   */
  refusal(thrown: unknown, requestId: string): Refusal {
    const error = classify(thrown, this.deps);
    return { error, status: error.status, headers: error.headers, body: toEnvelope(error, requestId) };
  }
}
