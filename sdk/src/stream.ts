import {
  AuthenticationError,
  ConnectionError,
  KeenError,
  NotFoundError,
  TimeoutError,
  errorFromResponse,
} from './errors.js';
import { backoffDelay, sleep } from './internal/backoff.js';
import { Connection, canSendHeaders, type WebSocketConstructor } from './internal/websocket.js';
import type { Session, SessionEventsResponse, StreamEvent } from './types.js';

/** Options of `client.stream()`. */
export interface StreamOptions {
  /** Start after this `seq` (default 0: the whole session, replayed from storage, then live). */
  after?: number;
  /** Aborting ends the iteration quietly and closes the connection. */
  signal?: AbortSignal;
}

/** Options of `client.streamAll()`. */
export interface StreamAllOptions {
  /** The only way a `streamAll()` ends: aborting closes the connection and ends the iteration quietly. */
  signal?: AbortSignal;
}

/** What a stream needs from its client; built by KeenClient, never exported. */
export interface StreamContext {
  baseUrl: string;
  timeout: number;
  authorization(): string | null;
  /** Rotates an expired access token; false when the client cannot. */
  renew(expired: KeenError): Promise<boolean>;
  webSocket(): Promise<WebSocketConstructor>;
  /**
   * `POST /v1/stream/tickets` through the client's own request path, when the
   * client provides it; else the stream asks with the global `fetch` and the
   * client's `Authorization` header.
   */
  ticket?(signal?: AbortSignal): Promise<string>;
  session(id: string, signal?: AbortSignal): Promise<Session>;
  events(id: string, after: number, signal?: AbortSignal): Promise<SessionEventsResponse>;
  running(signal?: AbortSignal): Promise<Session[]>;
}

/** Consecutive failed connections (or drops without a single event) before the stream gives up. */
const MAX_RECONNECTS = 10;

const isFinal = (e: StreamEvent): boolean => e.type === 'session.status' && e.data.status !== 'running';

/** What one stream follows and where it is: the last `seq` yielded per session. */
interface Follower {
  filter: string | null;
  /** Sent on every (re)connection: the subscriptions that resume where the stream was (no `after`: live only). */
  subscriptions(reconnect: boolean): Promise<Array<{ session_id: string; after?: number }>>;
  /** The events to yield for one received: none (a duplicate), or the gap before it plus itself. */
  accept(e: StreamEvent): AsyncGenerator<StreamEvent>;
  finished(): boolean;
}

/**
 * The events of one session: replayed from `after`, then live, across
 * reconnections, with no gap and no duplicate; ends after the final
 * `session.status`.
 */
export async function* followSession(
  ctx: StreamContext,
  sessionId: string,
  options: StreamOptions = {},
): AsyncGenerator<StreamEvent, void, undefined> {
  const { signal } = options;
  let last = options.after ?? 0;
  let done = false;
  // Also the access check: another user's session is a NotFoundError here.
  const session = await ctx.session(sessionId, signal);
  if (session.status !== 'running' && session.last_seq <= last) return;
  const follower: Follower = {
    filter: sessionId,
    subscriptions: async () => [{ session_id: sessionId, after: last }],
    async *accept(e) {
      if (e.session_id !== sessionId || e.seq <= last) return;
      for (const x of await fill(ctx, sessionId, last, e, signal)) {
        last = x.seq;
        yield x;
        if (isFinal(x)) {
          done = true;
          return;
        }
      }
    },
    finished: () => done,
  };
  yield* run(ctx, follower, signal);
}

/** Every session of the user as it happens, until `signal` aborts. */
export async function* followAll(
  ctx: StreamContext,
  options: StreamAllOptions = {},
): AsyncGenerator<StreamEvent, void, undefined> {
  const { signal } = options;
  const last = new Map<string, number>();
  const ended = new Set<string>();
  const follower: Follower = {
    filter: null,
    async subscriptions(reconnect) {
      // The connection carries every session of the user; subscribing to the running ones
      // as well resumes them after a reconnection (and covers a server that streams only
      // subscribed sessions). A session that started while disconnected is replayed whole.
      const subs = new Map<string, number | undefined>([...last]);
      try {
        for (const s of await ctx.running(signal))
          if (!subs.has(s.id) && !ended.has(s.id)) subs.set(s.id, reconnect ? 0 : undefined);
      } catch {
        // Best effort: the live feed still brings their next events.
      }
      return [...subs].map(([session_id, after]) => (after === undefined ? { session_id } : { session_id, after }));
    },
    async *accept(e) {
      if (ended.has(e.session_id)) return;
      const known = last.get(e.session_id);
      if (known !== undefined && e.seq <= known) return;
      // A session first seen mid-way was started before this stream: no gap to fill.
      for (const x of known === undefined ? [e] : await fill(ctx, e.session_id, known, e, signal)) {
        last.set(x.session_id, x.seq);
        yield x;
        if (isFinal(x)) {
          last.delete(x.session_id);
          ended.add(x.session_id);
          return;
        }
      }
    },
    finished: () => false,
  };
  yield* run(ctx, follower, signal);
}

/**
 * `e` preceded by whatever came between `after` and it. The server promises no
 * gap; should one appear anyway (a bus hiccup), the stored events fill it.
 */
async function fill(
  ctx: StreamContext,
  sessionId: string,
  after: number,
  e: StreamEvent,
  signal?: AbortSignal,
): Promise<StreamEvent[]> {
  if (e.seq === after + 1) return [e];
  const out: StreamEvent[] = [];
  let from = after;
  while (from < e.seq - 1) {
    const page = await ctx.events(sessionId, from, signal);
    const got = (page.events as StreamEvent[]).filter((x) => x.seq > from && x.seq < e.seq);
    if (got.length === 0) break;
    out.push(...got);
    from = got[got.length - 1]!.seq;
  }
  out.push(e);
  return out;
}

/** The connection loop: connect, subscribe, read, and on a drop reconnect with backoff and resume. */
async function* run(
  ctx: StreamContext,
  follower: Follower,
  signal?: AbortSignal,
): AsyncGenerator<StreamEvent, void, undefined> {
  // No `?sessions=` filter: subscribe messages carry `after`, which is what resuming needs.
  const url = streamUrl(ctx.baseUrl);
  let failures = 0;
  let renewed = false;
  let connectedBefore = false;
  while (!signal?.aborted) {
    let conn: Connection;
    try {
      const Ctor = await ctx.webSocket();
      if (canSendHeaders()) {
        const auth = ctx.authorization();
        conn = await Connection.open(Ctor, url, auth ? { authorization: auth } : {}, ctx.timeout, signal);
      } else {
        // A browser cannot set headers on a WebSocket: a fresh single-use ticket per connection.
        const ticket = await streamTicket(ctx, signal);
        conn = await Connection.open(Ctor, withTicket(url, ticket), null, ctx.timeout, signal, url, ORIGIN_HINT);
      }
    } catch (err) {
      if (signal?.aborted) return;
      if (err instanceof AuthenticationError && err.code === 'TOKEN_EXPIRED' && !renewed && (await ctx.renew(err))) {
        renewed = true;
        continue;
      }
      // A refusal the server means (401, 403, 404) does not heal by retrying.
      if (
        err instanceof KeenError &&
        err.status !== null &&
        err.status < 500 &&
        err.status !== 408 &&
        err.status !== 429
      )
        throw err;
      if (++failures > MAX_RECONNECTS) throw err;
      await sleep(backoffDelay(failures - 1, 250, 10_000), signal);
      continue;
    }
    renewed = false;
    let received = false;
    try {
      for (const sub of await follower.subscriptions(connectedBefore)) conn.send({ type: 'subscribe', ...sub });
      connectedBefore = true;
      for (;;) {
        const frame = await conn.next();
        // Messages already received are not delivered after an abort.
        if (signal?.aborted) return;
        if (frame.kind === 'closed') break;
        const problem = asError(frame.data);
        if (problem) {
          // The server could not read stored events: reconnecting subscribes again with `after`.
          if (problem.code === 'UNAVAILABLE') break;
          if (problem.code === 'NOT_FOUND' && problem.session_id === follower.filter) {
            throw new NotFoundError({
              type: 'NOT_FOUND',
              code: 'NOT_FOUND',
              message: problem.message ?? 'session not found',
              status: 404,
            });
          }
          continue;
        }
        const e = asEvent(frame.data);
        if (!e) continue;
        for await (const x of follower.accept(e)) {
          if (signal?.aborted) return;
          received = true;
          yield x;
        }
        if (follower.finished()) return;
      }
    } finally {
      conn.close();
    }
    if (signal?.aborted) return;
    failures = received ? 0 : failures + 1;
    if (failures > MAX_RECONNECTS) {
      throw new ConnectionError({
        type: 'CONNECTION_ERROR',
        code: 'STREAM_LOST',
        message: `the stream at ${url} keeps closing without delivering events`,
      });
    }
    await sleep(backoffDelay(failures, 250, 10_000), signal);
  }
}

/** A refused upgrade is only a failed connection to a page; the usual reason, named. */
const ORIGIN_HINT = " (from a web page: is the page's origin listed in the gateway's stream.allowed_origins?)";

/**
 * A single-use stream ticket (`POST /v1/stream/tickets`, valid 30 s) standing
 * for the client's credential: how a browser authenticates `GET /v1/stream`.
 * Failures are the usual errors (an expired access token: `AuthenticationError`
 * `TOKEN_EXPIRED`, which the connection loop renews), so they are retried or
 * thrown exactly as a refused upgrade would be.
 */
async function streamTicket(ctx: StreamContext, signal?: AbortSignal): Promise<string> {
  if (ctx.ticket) return ctx.ticket(signal);
  const endpoint = `${ctx.baseUrl}/v1/stream/tickets`;
  const auth = ctx.authorization();
  const timeout = AbortSignal.timeout(ctx.timeout);
  let status: number;
  let text: string;
  let headers: { get(name: string): string | null };
  try {
    const res = await fetch(endpoint, {
      method: 'POST',
      headers: { accept: 'application/json', ...(auth ? { authorization: auth } : {}) },
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    });
    status = res.status;
    headers = res.headers;
    text = await res.text();
  } catch (err) {
    if (signal?.aborted) throw signal.reason ?? err;
    if (timeout.aborted)
      throw new TimeoutError({
        type: 'CONNECTION_ERROR',
        code: 'TIMEOUT',
        message: `no answer from ${endpoint} within ${ctx.timeout} ms`,
        cause: err,
      });
    const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : (err as Error)?.message;
    throw new ConnectionError({
      type: 'CONNECTION_ERROR',
      code: 'CONNECTION_FAILED',
      message: `cannot reach ${endpoint}: ${cause}`,
      cause: err,
    });
  }
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (status < 200 || status >= 300) throw errorFromResponse(status, body, headers);
  const ticket = (body as { ticket?: unknown } | null)?.ticket;
  if (typeof ticket !== 'string') {
    throw new KeenError({
      type: 'SYSTEM_ERROR',
      code: 'INVALID_RESPONSE',
      message: `the answer of POST ${endpoint} holds no ticket`,
      status,
      requestId: headers.get('x-request-id'),
    });
  }
  return ticket;
}

function withTicket(url: string, ticket: string): string {
  const u = new URL(url);
  u.searchParams.set('ticket', ticket);
  return u.toString();
}

function streamUrl(baseUrl: string): string {
  const url = new URL(`${baseUrl}/v1/stream`);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}

/** A server message about a failure: `{type: "error", error: {code, message}, session_id?}`. */
function asError(data: unknown): { code: string; message?: string; session_id?: string } | null {
  const m = data as { type?: unknown; error?: { code?: unknown; message?: unknown }; session_id?: unknown } | null;
  if (!m || typeof m !== 'object' || m.type !== 'error' || typeof m.error?.code !== 'string') return null;
  return {
    code: m.error.code,
    ...(typeof m.error.message === 'string' ? { message: m.error.message } : {}),
    ...(typeof m.session_id === 'string' ? { session_id: m.session_id } : {}),
  };
}

function asEvent(data: unknown): StreamEvent | null {
  const m = data as Partial<StreamEvent> | null;
  if (
    !m ||
    typeof m !== 'object' ||
    typeof m.type !== 'string' ||
    typeof m.session_id !== 'string' ||
    typeof m.seq !== 'number'
  )
    return null;
  return m as StreamEvent;
}
