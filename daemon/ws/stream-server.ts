import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import type { Redis } from 'ioredis';
import { WebSocketServer, type WebSocket } from 'ws';
import type { AuthService } from '../auth/auth-service.js';
import type { AuditLogger } from '../audit/types.js';
import type { Clock } from '../clock.js';
import type { ResolvedConfig } from '../config/load.js';
import { actorOf, auditContext } from '../audit/actor.js';
import type { ClientInfo } from '../auth/auth-service.js';
import type { Principal } from '../auth/principal.js';
import { GatewayError } from '../errors.js';
import { Edge, type Access } from '../http/edge.js';
import { NUL_MESSAGE, nulFields } from '../http/validation.js';
import { newId } from '../ids.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { BusEnvelope, EventBus } from '../sessions/bus.js';
import { createRedis } from '../redis.js';
import type { SessionRepository } from '../storage/repos/sessions.js';
import { grantKey, type StreamGrant } from './grants.js';
import { StreamMetrics } from './metrics.js';
import { CLOSE, StreamConnection, type StreamHub } from './stream-connection.js';
import { MemoryTicketStore, RedisTicketStore, StreamTickets } from './tickets.js';

export interface StreamServerDeps {
  auth: AuthService;
  /** Where replays and reconciliations read stored events (built once by the container). */
  sessions: SessionRepository;
  bus: EventBus;
  config: ResolvedConfig;
  logger: Logger;
  metrics: Metrics;
  clock: Clock;
  audit: AuditLogger;
}

/**
 * Limits and timers of the stream; the defaults are the documented ones (docs/stream.md)
 * and equal the config defaults of the `stream` section (streamOptionsFromConfig).
 */
export interface StreamServerOptions {
  /** Heartbeat: a ping this often; a peer that has not answered the previous one is dropped. */
  pingIntervalMs: number;
  /** How often every connection's credential is checked again (suspension, expiry, revocation). */
  recheckIntervalMs: number;
  /** Open connections per user on one daemon. */
  maxConnectionsPerUser: number;
  /** Subscriptions per connection. */
  maxSubscriptions: number;
  /** Bytes queued for a peer before it is closed with 1013. */
  maxBufferedBytes: number;
  /** Client messages: steady rate and burst (token bucket). */
  messagesPerSecond: number;
  messageBurst: number;
  /** How long `close()` waits for clients to answer 1001 before cutting them off. */
  shutdownGraceMs: number;
  /** How long a slow peer closed with 1013 keeps its socket (to read the close frame) before it is cut. */
  slowCloseGraceMs: number;
  /**
   * A subscription whose live feed has been quiet this long is checked against
   * the database (one query for all of them) and refilled when behind: events
   * the bus lost (a Redis outage) still reach the client, the final status included.
   */
  reconcileIntervalMs: number;
}

export const DEFAULT_STREAM_OPTIONS: StreamServerOptions = {
  pingIntervalMs: 30_000,
  recheckIntervalMs: 5_000,
  maxConnectionsPerUser: 20,
  maxSubscriptions: 100,
  maxBufferedBytes: 1024 * 1024,
  messagesPerSecond: 20,
  messageBurst: 50,
  shutdownGraceMs: 1_000,
  slowCloseGraceMs: 5_000,
  reconcileIntervalMs: 5_000,
};

/**
 * The limits an operator sets under `stream:` in the config, as server options.
 * Shutdown and slow-close grace and the reconciliation interval stay internal (DEFAULT_STREAM_OPTIONS).
 */
export function streamOptionsFromConfig(stream: ResolvedConfig['stream']): Partial<StreamServerOptions> {
  return {
    maxConnectionsPerUser: stream.max_connections_per_user,
    maxSubscriptions: stream.max_subscriptions_per_connection,
    maxBufferedBytes: stream.max_buffered_bytes,
    pingIntervalMs: Math.max(1, Math.round(stream.ping_interval_seconds * 1000)),
    recheckIntervalMs: Math.max(1, Math.round(stream.credential_recheck_seconds * 1000)),
    messagesPerSecond: stream.messages_per_second,
    messageBurst: stream.message_burst,
  };
}

const STREAM_PATH = '/v1/stream';
/** Largest client frame (a subscribe message is well under 1 KiB). */
const MAX_PAYLOAD = 64 * 1024;
/** Fragments of one client message. */
const MAX_FRAGMENTS = 256;
/** An upgrade request with more headers than this is refused (Node keeps at most `maxHeadersCount`). */
const MAX_UPGRADE_HEADERS = 100;
/** What the stream asks of its caller, as a route spec would (docs/stream.md). */
const STREAM_ACCESS: Access = { auth: 'any', scope: 'sessions:read' };

/** One upgrade request at the edge: its request id, client address and user agent, and the path it asked for. */
interface Upgrade {
  client: ClientInfo;
  path: string;
}

/**
 * The WebSocket stream on the HTTP server's port (`GET /v1/stream`,
 * docs/stream.md). Everything that can refuse a client (path, origin, credential,
 * scope, connection limit) is decided before the handshake and answered as a
 * plain HTTP response, so a refused client never gets a socket.
 */
export class StreamServer {
  private readonly options: StreamServerOptions;
  private readonly wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_PAYLOAD,
    // A client message is one small frame; a flood of fragments is closed with 1008 long before maxPayload.
    maxFragments: MAX_FRAGMENTS,
    perMessageDeflate: false,
    clientTracking: false,
  });
  private readonly streamMetrics: StreamMetrics;
  /** Request id, client address, credential, scope and error envelope: the same rules as HTTP. */
  private readonly edge: Edge;
  /** The request id of an upgrade being completed, for the `X-Request-Id` of its 101 answer. */
  private readonly upgradeIds = new WeakMap<IncomingMessage, string>();
  private readonly tickets: StreamTickets;
  private readonly allowedOrigins: Set<string>;
  private readonly connections = new Set<StreamConnection>();
  private readonly perUser = new Map<string, number>();
  /** Session id -> the connections following it: one lookup per published event. */
  private readonly watchers = new Map<string, Set<StreamConnection>>();
  /** Connections that follow every session of their user, by user id. */
  private readonly followers = new Map<string, Set<StreamConnection>>();
  private readonly hub: StreamHub;
  private unsubscribeBus: (() => void) | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private recheck: NodeJS.Timeout | null = null;
  private rechecking = false;
  private reconciler: NodeJS.Timeout | null = null;
  private reconciling = false;
  private closing = false;

  constructor(
    private readonly deps: StreamServerDeps,
    options: Partial<StreamServerOptions> = {},
  ) {
    this.options = { ...DEFAULT_STREAM_OPTIONS, ...options };
    this.streamMetrics = new StreamMetrics(deps.metrics);
    this.edge = new Edge({
      auth: deps.auth,
      trustedProxies: deps.config.server.trusted_proxies,
      logger: deps.logger,
      metrics: deps.metrics,
    });
    this.wss.on('headers', (headers, req) => {
      const id = this.upgradeIds.get(req);
      if (id !== undefined) headers.push(`X-Request-Id: ${id}`);
    });
    this.allowedOrigins = new Set(deps.config.stream.allowed_origins);
    const { redis } = deps.config;
    this.tickets = new StreamTickets(
      redis.url
        ? new RedisTicketStore(createTicketRedis(redis.url, deps.logger), `${redis.key_prefix}stream-ticket:`, true)
        : new MemoryTicketStore(deps.clock),
      deps.clock,
    );
    this.hub = {
      sessions: deps.sessions,
      metrics: this.streamMetrics,
      logger: deps.logger,
      clock: deps.clock,
      // The same object `tune` changes.
      limits: this.options,
      watch: (id, conn) => {
        let set = this.watchers.get(id);
        if (!set) this.watchers.set(id, (set = new Set()));
        set.add(conn);
      },
      unwatch: (id, conn) => {
        const set = this.watchers.get(id);
        if (set?.delete(conn) && set.size === 0) this.watchers.delete(id);
      },
      notFound: (conn, sessionId) => {
        const p = conn.grant.principal;
        void this.deps.audit
          .record({
            action: 'access.not_found',
            outcome: 'denied',
            actor: actorOf(p),
            tenantId: p.tenantId,
            target: { type: 'session', id: sessionId.slice(0, 64) },
            ...auditContext(conn.client),
            details: { via: 'stream' },
          })
          .catch(() => undefined);
      },
    };
  }

  /** Changes limits and timers of a running server (tests shorten the heartbeat and the re-check). */
  tune(options: Partial<StreamServerOptions>): void {
    Object.assign(this.options, options);
    if (this.unsubscribeBus) this.startTimers();
  }

  /** Takes over `upgrade` events of the HTTP server. */
  attach(server: http.Server): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      // A reset socket must not become an unhandled 'error' event.
      socket.on('error', () => socket.destroy());
      // Logs name the path only: the query string may hold a token or a ticket.
      const up: Upgrade = { client: this.edge.context(req), path: (req.url ?? '/').split('?')[0]!.slice(0, 256) };
      this.onUpgrade(req, socket, head, up).catch((err: unknown) => this.reject(socket, up, err));
    });
    this.unsubscribeBus = this.deps.bus.subscribe((envelope) => this.dispatch(envelope));
    this.startTimers();
  }

  /**
   * `POST /v1/stream/tickets`: a single-use ticket standing for the caller's credential, which the
   * route's guard authenticated (`principal`, from `authorization`): not authenticated again here.
   */
  async issueTicket(principal: Principal, authorization: string): Promise<{ ticket: string; expires_at: string }> {
    return this.tickets.issue(await this.edge.grantOf(principal, authorization));
  }

  /** Closes every stream connection with 1001 (going away) so clients resume elsewhere. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.stopTimers();
    this.unsubscribeBus?.();
    this.unsubscribeBus = null;
    const open = [...this.connections];
    for (const conn of open) conn.close(CLOSE.GOING_AWAY, 'server shutting down');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(open.map((c) => c.closedPromise)),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.options.shutdownGraceMs);
      }),
    ]);
    clearTimeout(timer);
    for (const conn of this.connections) conn.ws.terminate();
    await this.tickets.close().catch(() => undefined);
    this.wss.close();
  }

  private startTimers(): void {
    this.stopTimers();
    this.heartbeat = setInterval(() => this.ping(), this.options.pingIntervalMs);
    this.heartbeat.unref();
    this.recheck = setInterval(() => void this.recheckGrants(), this.options.recheckIntervalMs);
    this.recheck.unref();
    this.reconciler = setInterval(() => void this.reconcile(), this.options.reconcileIntervalMs);
    this.reconciler.unref();
  }

  private stopTimers(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.recheck) clearInterval(this.recheck);
    if (this.reconciler) clearInterval(this.reconciler);
    this.heartbeat = this.recheck = this.reconciler = null;
  }

  /**
   * Checks every subscription quiet for a whole interval against the database,
   * in batches of 500 sessions per query, and refills those that are behind.
   * Live events normally arrive well within the interval; what the bus lost
   * arrives within about two.
   */
  private async reconcile(): Promise<void> {
    if (this.reconciling || this.connections.size === 0) return;
    this.reconciling = true;
    try {
      const before = this.deps.clock.now() - this.options.reconcileIntervalMs;
      const quiet = new Map<string, StreamConnection[]>();
      for (const conn of this.connections) {
        for (const { sessionId } of conn.quietSince(before)) {
          const list = quiet.get(sessionId);
          if (list) list.push(conn);
          else quiet.set(sessionId, [conn]);
        }
      }
      const ids = [...quiet.keys()];
      for (let i = 0; i < ids.length; i += 500) {
        for (const row of await this.hub.sessions.progress(ids.slice(i, i + 500))) {
          for (const conn of quiet.get(row.id) ?? []) conn.reconcile(row.id, row.last_seq);
        }
      }
    } catch (err) {
      this.deps.logger.warn(
        { err: { message: (err as Error).message } },
        'stream reconciliation failed; retrying next interval',
      );
    } finally {
      this.reconciling = false;
    }
  }

  private ping(): void {
    for (const conn of this.connections) {
      if (!conn.alive) {
        conn.ws.terminate();
        continue;
      }
      conn.alive = false;
      conn.ws.ping();
    }
  }

  /**
   * Suspended users, expired tokens, revoked keys: their open connections are
   * closed with 1008. One check per credential, however many connections share it.
   */
  private async recheckGrants(): Promise<void> {
    if (this.rechecking || this.connections.size === 0) return;
    this.rechecking = true;
    try {
      const groups = new Map<string, { grant: StreamGrant; conns: StreamConnection[] }>();
      for (const conn of this.connections) {
        const key = grantKey(conn.grant);
        const g = groups.get(key);
        if (g) g.conns.push(conn);
        else groups.set(key, { grant: conn.grant, conns: [conn] });
      }
      for (const { grant, conns } of groups.values()) {
        let why;
        try {
          why = await this.edge.grantEnded(grant);
        } catch (err) {
          // The database is away: keep the connections rather than drop every client at once.
          this.deps.logger.warn({ err: { message: (err as Error).message } }, 'stream credential re-check failed');
          return;
        }
        if (!why) continue;
        for (const conn of conns) {
          this.deps.logger.info(
            { connection_id: conn.id, req_id: conn.client.requestId, reason: why },
            'stream credential no longer valid: closing with 1008',
          );
          conn.close(CLOSE.POLICY_VIOLATION, why);
        }
      }
    } finally {
      this.rechecking = false;
    }
  }

  private dispatch(envelope: BusEnvelope): void {
    const set = this.watchers.get(envelope.event.session_id);
    // Serialized and encoded once, sent to every watcher.
    let encoded: Buffer | null = null;
    const serialize = () => (encoded ??= Buffer.from(JSON.stringify(envelope.event)));
    // A snapshot: a watcher that drops its subscription on the final event must not get it again below.
    const watching = new Set(set ?? []);
    for (const conn of watching) conn.onLive(envelope.event, envelope.userId, serialize);
    // Connections without a sessions filter follow every session of their user.
    const all = this.followers.get(envelope.userId);
    if (all)
      for (const conn of [...all])
        if (!watching.has(conn)) conn.onUserEvent(envelope.event, envelope.userId, serialize);
  }

  /**
   * Decides an upgrade before the handshake. Every refusal is thrown, and answered by
   * `reject` as the HTTP edge answers it (daemon/http/edge.ts).
   */
  private async onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, up: Upgrade): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://stream.invalid');
    } catch {
      throw new GatewayError('INVALID_FIELD', 'malformed request target');
    }
    up.path = url.pathname.slice(0, 256);
    if (url.pathname !== STREAM_PATH) throw new GatewayError('NOT_FOUND', 'route not found');
    // U+0000 in any parameter (sessions, after, ticket, token): refused before any lookup.
    const nul = [...new Set([...url.searchParams].flatMap(([k, v]) => nulFields({ [k]: v })))];
    if (nul.length > 0) {
      throw new GatewayError('INVALID_FIELD', `query: ${nul[0]} ${NUL_MESSAGE}`, {
        details: nul.map((field) => ({ field, message: NUL_MESSAGE })),
      });
    }
    if (this.closing)
      throw new GatewayError('UNAVAILABLE', 'server shutting down', { headers: { 'Retry-After': '1' } });
    if (req.rawHeaders.length / 2 > MAX_UPGRADE_HEADERS) {
      return this.reject(socket, up, new GatewayError('INVALID_FIELD', 'too many request headers'), 431);
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !this.allowedOrigins.has(origin))
      throw new GatewayError('FORBIDDEN', 'origin not allowed');
    const grant = await this.authenticate(req, url);
    this.edge.authorize(grant.principal, STREAM_ACCESS);
    const sessions = (url.searchParams.get('sessions') ?? '').split(',').filter((s) => s.length > 0);
    if (sessions.length > this.options.maxSubscriptions || sessions.some((s) => s.length > 64)) {
      throw new GatewayError('INVALID_FIELD', `sessions: at most ${this.options.maxSubscriptions} session ids`);
    }
    const afterParam = url.searchParams.get('after');
    const after = afterParam === null ? null : /^\d{1,15}$/.test(afterParam) ? Number(afterParam) : NaN;
    if (Number.isNaN(after)) throw new GatewayError('INVALID_FIELD', 'after must be a non-negative integer');
    const userId = grant.principal.userId;
    if ((this.perUser.get(userId) ?? 0) >= this.options.maxConnectionsPerUser) {
      throw new GatewayError(
        'CONCURRENCY_LIMIT',
        `at most ${this.options.maxConnectionsPerUser} stream connections per user`,
        { headers: { 'Retry-After': '5' } },
      );
    }
    if (this.closing)
      throw new GatewayError('UNAVAILABLE', 'server shutting down', { headers: { 'Retry-After': '1' } });
    // No await from the limit check to here: handleUpgrade completes synchronously (no extensions, no verifyClient).
    this.upgradeIds.set(req, up.client.requestId);
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, grant, up, sessions, after));
  }

  /** `Authorization` header, else `?ticket=`, else `?token=` (the browser fallback; docs/stream.md). */
  private async authenticate(req: IncomingMessage, url: URL): Promise<StreamGrant> {
    const header = req.headers.authorization;
    if (header !== undefined) return this.edge.grant(header);
    const ticket = url.searchParams.get('ticket');
    if (ticket !== null) {
      const grant = await this.tickets.redeem(ticket);
      if (!grant) throw new GatewayError('INVALID_TOKEN', 'stream ticket is invalid, used or expired');
      // The credential behind the ticket may have died in the meantime.
      const why = await this.edge.grantEnded(grant);
      if (why) throw new GatewayError(why, 'the credential behind this ticket is no longer valid');
      return grant;
    }
    const token = url.searchParams.get('token');
    if (token !== null) return this.edge.grant(`Bearer ${token}`);
    throw new GatewayError('MISSING_TOKEN', 'credentials required: an Authorization header, ?ticket= or ?token=');
  }

  private onConnection(ws: WebSocket, grant: StreamGrant, up: Upgrade, sessions: string[], after: number | null): void {
    const conn = new StreamConnection(newId('con'), ws, grant, up.client, this.hub);
    const userId = grant.principal.userId;
    this.connections.add(conn);
    this.perUser.set(userId, (this.perUser.get(userId) ?? 0) + 1);
    this.streamMetrics.connections.inc();
    ws.on('error', (err) =>
      this.deps.logger.debug({ connection_id: conn.id, err: { message: err.message } }, 'stream connection error'),
    );
    ws.once('close', (code) => {
      this.connections.delete(conn);
      const mine = this.followers.get(userId);
      if (mine?.delete(conn) && mine.size === 0) this.followers.delete(userId);
      const n = (this.perUser.get(userId) ?? 1) - 1;
      if (n > 0) this.perUser.set(userId, n);
      else this.perUser.delete(userId);
      this.streamMetrics.connections.dec();
      this.deps.logger.debug({ connection_id: conn.id, code }, 'stream connection closed');
    });
    // One line per upgrade, as HTTP has one per request: the request id and address of the edge.
    this.deps.logger.info(
      {
        req_id: up.client.requestId,
        path: up.path,
        status: 101,
        ip: up.client.ip,
        connection_id: conn.id,
        user_id: userId,
      },
      'stream connection opened',
    );
    if (this.closing) return conn.close(CLOSE.GOING_AWAY, 'server shutting down');
    conn.start(sessions, after);
    if (conn.followsAll) {
      let mine = this.followers.get(userId);
      if (!mine) this.followers.set(userId, (mine = new Set()));
      mine.add(conn);
    }
  }

  /**
   * Refuses an upgrade: the HTTP edge's answer for `thrown` (status, headers, JSON
   * envelope with the request id) as a real HTTP response on the raw socket, one
   * log line, then the socket is closed. No upgrade.
   */
  private reject(socket: Duplex, up: Upgrade, thrown: unknown, status?: number): void {
    const { requestId, ip } = up.client;
    const refusal = this.edge.refusal(thrown, requestId);
    const answer = status ?? refusal.status;
    if (refusal.error.code === 'INTERNAL')
      this.deps.logger.error({ req_id: requestId, err: thrown }, 'stream upgrade failed');
    this.deps.logger.info(
      { req_id: requestId, path: up.path, status: answer, ip, code: refusal.error.code },
      'stream upgrade refused',
    );
    this.streamMetrics.rejectedUpgrades.inc({ status: String(answer) });
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const body = JSON.stringify(refusal.body);
    const head = [
      `HTTP/1.1 ${answer} ${STATUS_CODES[answer] ?? 'Error'}`,
      'Content-Type: application/json',
      `Content-Length: ${Buffer.byteLength(body)}`,
      'Connection: close',
      `X-Request-Id: ${requestId}`,
      ...Object.entries(refusal.headers).map(([k, v]) => `${k}: ${v}`),
    ];
    socket.once('finish', () => socket.destroy());
    socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
    // A peer that never reads would keep 'finish' from firing.
    setTimeout(() => socket.destroy(), 2000).unref();
  }
}

/** The ticket store's own command connection (the container's is not handed to the stream). */
function createTicketRedis(url: string, logger: Logger): Redis {
  return createRedis(url, logger, { connectionName: 'keen-gateway:stream-tickets' });
}
