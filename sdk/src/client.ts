import { ConnectionError, KeenError, TimeoutError, errorFromResponse, parseRetryAfter } from './errors.js';
import { backoffDelay, sleep } from './internal/backoff.js';
import { resolveWebSocket, type WebSocketConstructor } from './internal/websocket.js';
import { AdminKeys } from './resources/admin-keys.js';
import { ApiKeys } from './resources/api-keys.js';
import { Audit } from './resources/audit.js';
import { Credits } from './resources/credits.js';
import { Sessions } from './resources/sessions.js';
import { Tenants } from './resources/tenants.js';
import { Users } from './resources/users.js';
import { Usage } from './resources/usage.js';
import { Budgets } from './resources/budgets.js';
import { Webhooks } from './resources/webhooks.js';
import { followAll, followSession, type StreamAllOptions, type StreamContext, type StreamOptions } from './stream.js';
import type { ExecuteRequest, ExecuteResponse, MeResponse, QuoteResponse, RefreshResponse } from './types.gen.js';
import type { Session, StreamEvent, TokensListener } from './types.js';

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

interface CommonOptions {
  /** The gateway, e.g. `https://keen.example.com` (no `/v1`). */
  baseUrl: string;
  /** Milliseconds per attempt (default 30 s). */
  timeout?: number;
  /** Retries of network errors, timeouts, 429 and 5xx (default 2). */
  maxRetries?: number;
  /** A fetch implementation (default: the global one). */
  fetch?: FetchLike;
  /** A WebSocket class for streams (default: the global one, else the `ws` package). */
  WebSocket?: WebSocketConstructor;
}

/** Authenticates with an API key (`ak_live_...`), sent as `Authorization: ApiKey ...`. */
export interface ApiKeyAuth {
  apiKey: string;
  accessToken?: never;
  refreshToken?: never;
  onTokens?: never;
}

/** Authenticates as a signed-in user: `Authorization: Bearer <access token>`. */
export interface TokenAuth {
  apiKey?: never;
  /** A JWT access token (valid 15 minutes). */
  accessToken: string;
  /** With it the client trades an expired access token for a new pair by itself. */
  refreshToken?: string;
  /** Receives every rotated pair: the old refresh token is dead once it is used, so persist the new one. */
  onTokens?: TokensListener;
}

export type KeenClientOptions = CommonOptions & (ApiKeyAuth | TokenAuth);

export interface RequestOptions {
  body?: unknown;
  query?: Record<string, string | number | boolean | undefined | null>;
  /** Reused across retries; one is generated for every POST when not given. */
  idempotencyKey?: string;
  /** Aborts the request (and its retries); the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * false: never retried, whatever happens (a call whose answer holds a secret the
   * server keeps no copy of, like a key roll: a lost answer must not roll twice).
   */
  retry?: boolean;
}

/** Options of `client.requestLines()`. */
export interface LinesOptions {
  query?: RequestOptions['query'];
  /** Stops the iteration: the pending `next()` rejects with the signal's reason, and the connection closes. */
  signal?: AbortSignal;
}

/** Options of `client.execute()`. */
export interface ExecuteOptions {
  /**
   * Makes the run happen at most once for this key (24 h, per user): a retry with
   * the same key and body answers the first run instead of starting and charging
   * another. Default: a new key per call, reused by the client's own retries.
   */
  idempotencyKey?: string;
  signal?: AbortSignal;
}

/** A Retry-After longer than this is not waited for: the error is thrown at once so the caller decides. */
const MAX_RETRY_AFTER_MS = 60_000;

const USER_AGENT = 'keen-sdk/0.1';
const JSON_TYPE = 'application/json';
const NDJSON_TYPE = 'application/x-ndjson';

/** A response body as JSON, or null when it is empty or not JSON (a proxy's page). */
function parseBody(text: string): unknown {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

/**
 * The keen-gateway client.
 *
 * Every POST carries an idempotency key that its retries reuse, so a retried
 * request never takes effect twice; network errors, timeouts, 429 and 5xx are
 * retried with jittered exponential backoff that honors Retry-After.
 */
export class KeenClient {
  readonly baseUrl: string;
  /** List, read and cancel your sessions. */
  readonly sessions: Sessions;
  /** Balance and ledger. */
  readonly credits: Credits;
  /** Your API keys (token auth only). */
  readonly apiKeys: ApiKeys;
  /** Users (administrators): create, list, read, suspend, activate, set the tier, reset MFA, unlock. */
  readonly users: Users;
  /** API keys of any user in reach (administrators, API key or token): create, list, update, roll, revoke. */
  readonly adminKeys: AdminKeys;
  /** The audit log, as JSON Lines (administrators): export a range, follow the live feed. */
  readonly audit: Audit;
  /** Tenants and their credit pools (administrators). */
  readonly tenants: Tenants;
  /** Usage reports: your own (`get`), and over an administrator's reach (`admin`). */
  readonly usage: Usage;
  /** Budgets of API keys, users and tenants: yours (`mine`), and administrators' (`set`, `list`). */
  readonly budgets: Budgets;
  /** Registered webhook endpoints, their secrets and delivery logs; `adminList` for administrators. */
  readonly webhooks: Webhooks;

  private readonly timeout: number;
  private readonly maxRetries: number;
  private readonly fetchImpl: FetchLike;
  private readonly webSocketClass: WebSocketConstructor | undefined;
  private readonly apiKey: string | null;
  private accessToken: string | null;
  private refreshToken: string | null;
  private readonly onTokens: TokensListener | undefined;
  private refreshing: Promise<void> | null = null;

  constructor(options: KeenClientOptions) {
    if (!options?.baseUrl) throw new TypeError('baseUrl is required');
    if (!options.apiKey && !options.accessToken) throw new TypeError('apiKey or accessToken is required');
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.timeout = options.timeout ?? 30_000;
    this.maxRetries = options.maxRetries ?? 2;
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
    this.webSocketClass = options.WebSocket;
    this.apiKey = options.apiKey ?? null;
    this.accessToken = options.accessToken ?? null;
    this.refreshToken = options.refreshToken ?? null;
    this.onTokens = options.onTokens;
    this.sessions = new Sessions(this);
    this.credits = new Credits(this);
    this.apiKeys = new ApiKeys(this);
    this.users = new Users(this);
    this.adminKeys = new AdminKeys(this);
    this.audit = new Audit(this);
    this.tenants = new Tenants(this);
    this.usage = new Usage(this);
    this.budgets = new Budgets(this);
    this.webhooks = new Webhooks(this);
  }

  /**
   * Starts an agent run: validates, reserves credits and a session slot, starts
   * the agent. Follow it with `stream(response.session.id)`.
   * @throws InsufficientCreditsError (402, with `shortfall`), RateLimitError (429), ValidationError (400)...
   */
  execute(request: ExecuteRequest, options: ExecuteOptions = {}): Promise<ExecuteResponse> {
    return this.request<ExecuteResponse>('POST', '/v1/agents/execute', { body: request, ...options });
  }

  /** What `execute` would decide now, and why (cost estimate, reservation, admission); no side effects. */
  quote(request: ExecuteRequest, options: { signal?: AbortSignal } = {}): Promise<QuoteResponse> {
    return this.request<QuoteResponse>('POST', '/v1/agents/quote', { body: request, ...options });
  }

  /** The authenticated user, the scopes in effect and how they authenticated. */
  me(): Promise<MeResponse> {
    return this.request<MeResponse>('GET', '/v1/me');
  }

  /**
   * The events of one session over the WebSocket stream: the stored ones after
   * `after`, then live ones. It reconnects with backoff and resumes after the
   * last `seq` it yielded (no gap, no duplicate), and ends after the final
   * `session.status`.
   *
   * ```ts
   * for await (const e of client.stream(id)) if (e.type === 'agent.phase') console.log(e.data.phase);
   * ```
   */
  stream(sessionId: string, options: StreamOptions = {}): AsyncGenerator<StreamEvent, void, undefined> {
    return followSession(this.streamContext(), sessionId, options);
  }

  /** The events of every session of yours, as they happen, until `signal` aborts. */
  streamAll(options: StreamAllOptions = {}): AsyncGenerator<StreamEvent, void, undefined> {
    return followAll(this.streamContext(), options);
  }

  /**
   * Sends one API request with retries; resolves with the parsed success body.
   * The escape hatch for endpoints without a method (the operator CLI's admin calls).
   */
  request<T = Record<string, unknown>>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    return this.send<T>(method, path, options, true, options.retry === false ? 0 : this.maxRetries);
  }

  /**
   * Sends one authenticated GET to an endpoint that answers JSON Lines
   * (`application/x-ndjson`) and yields each line parsed, as it arrives: the
   * streaming counterpart of `request()` (`client.audit` is built on it).
   *
   * - A non-2xx answer throws the matching `KeenError`, from the error envelope
   *   as for every other call, before anything is yielded. An expired access
   *   token is refreshed once; nothing else is retried (once lines have been
   *   yielded only the caller knows where to resume).
   * - The client's `timeout` bounds the wait for the response to start, not its
   *   length. A connection that breaks mid-body throws a `ConnectionError`
   *   (`STREAM_LOST`); a line that is not JSON, a `KeenError` (`INVALID_RESPONSE`).
   * - Aborting `options.signal` stops the iteration: the pending `next()` rejects
   *   with the signal's reason. Leaving the loop early (`break`) closes the connection.
   */
  async *requestLines<T = Record<string, unknown>>(
    path: string,
    options: LinesOptions = {},
  ): AsyncGenerator<T, void, undefined> {
    const { signal } = options;
    signal?.throwIfAborted();
    // Closes the connection when the caller leaves early, and times out a response that does not start.
    const local = new AbortController();
    try {
      const res = await this.openLines(this.url(path, options.query), signal, local);
      let n = 0;
      for await (const line of this.bodyLines(res, signal)) {
        n++;
        let item: unknown;
        try {
          item = JSON.parse(line);
        } catch (thrown) {
          throw new KeenError({
            type: 'SYSTEM_ERROR',
            code: 'INVALID_RESPONSE',
            message: `line ${n} of the response to GET ${path} is not JSON`,
            status: res.status,
            requestId: res.headers.get('x-request-id'),
            cause: thrown,
          });
        }
        yield item as T;
      }
    } finally {
      local.abort();
    }
  }

  /** Sends the GET of `requestLines()`; resolves with a 2xx response whose body is still to be read. */
  private async openLines(url: string, signal: AbortSignal | undefined, local: AbortController): Promise<Response> {
    const fetchSignal = signal ? AbortSignal.any([signal, local.signal]) : local.signal;
    let renewed = false;
    for (;;) {
      const auth = this.authorization();
      const timer = setTimeout(
        () => local.abort(new DOMException(`no answer within ${this.timeout} ms`, 'TimeoutError')),
        this.timeout,
      );
      let err: KeenError;
      try {
        const res = await this.fetchImpl(url, {
          method: 'GET',
          headers: this.headers(NDJSON_TYPE, auth),
          signal: fetchSignal,
        });
        if (res.ok) return res;
        err = errorFromResponse(res.status, parseBody(await res.text()), res.headers);
      } catch (thrown) {
        if (signal?.aborted) throw signal.reason ?? thrown;
        err = this.transportError(thrown);
      } finally {
        clearTimeout(timer);
      }
      if (
        err.code === 'TOKEN_EXPIRED' &&
        auth?.startsWith('Bearer ') &&
        !renewed &&
        (await this.renew(auth.slice(7)))
      ) {
        renewed = true;
        continue;
      }
      throw err;
    }
  }

  /** The non-empty lines of a streaming body, without their newline. */
  private async *bodyLines(res: Response, signal: AbortSignal | undefined): AsyncGenerator<string, void, undefined> {
    if (!res.body) return;
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for (;;) {
        let chunk: { done: boolean; value?: Uint8Array | undefined };
        try {
          chunk = await reader.read();
        } catch (thrown) {
          if (signal?.aborted) throw signal.reason ?? thrown;
          const e = thrown as Error | undefined;
          const cause = e?.cause instanceof Error ? e.cause.message : e?.message;
          throw new ConnectionError({
            type: 'CONNECTION_ERROR',
            code: 'STREAM_LOST',
            message: `the response from ${this.baseUrl} broke off: ${cause}`,
            cause: thrown,
          });
        }
        if (chunk.done) break;
        buf += decoder.decode(chunk.value, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.trim() !== '') yield line;
        }
      }
      buf += decoder.decode();
      if (buf.trim() !== '') yield buf;
    } finally {
      // Early exit: stop the body (a no-op once it has ended).
      reader.cancel().catch(() => undefined);
    }
  }

  private url(path: string, query: RequestOptions['query']): string {
    const url = new URL(this.baseUrl + path);
    for (const [k, v] of Object.entries(query ?? {}))
      if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
    return url.toString();
  }

  /** The headers of every request: what it accepts, who sends it, and the credentials when there are any. */
  private headers(accept: string, auth: string | null): Record<string, string> {
    const headers: Record<string, string> = { accept, 'user-agent': USER_AGENT };
    if (auth) headers.authorization = auth;
    return headers;
  }

  private async send<T>(
    method: string,
    path: string,
    options: RequestOptions,
    authenticated: boolean,
    maxRetries: number,
  ): Promise<T> {
    const url = this.url(path, options.query);
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);
    // Generated once, before the first attempt: every retry carries the same key.
    const idempotencyKey = options.idempotencyKey ?? (method === 'POST' ? crypto.randomUUID() : undefined);
    let renewed = false;
    for (let attempt = 0; ; ) {
      const auth = authenticated ? this.authorization() : null;
      const headers = this.headers(JSON_TYPE, auth);
      if (body !== undefined) headers['content-type'] = 'application/json';
      if (idempotencyKey) headers['idempotency-key'] = idempotencyKey;
      let err: KeenError;
      let retryAfter: number | null = null;
      try {
        const res = await this.fetchImpl(url, { method, headers, body, signal: this.attemptSignal(options.signal) });
        const parsed = parseBody(await res.text());
        if (res.ok) return parsed as T;
        err = errorFromResponse(res.status, parsed, res.headers);
        retryAfter = parseRetryAfter(res.headers.get('retry-after'));
      } catch (thrown) {
        // The caller's own abort is not a failure to retry.
        if (options.signal?.aborted) throw options.signal.reason ?? thrown;
        err = this.transportError(thrown);
      }
      if (
        err.code === 'TOKEN_EXPIRED' &&
        auth?.startsWith('Bearer ') &&
        !renewed &&
        (await this.renew(auth.slice(7)))
      ) {
        // One refresh per request, not counted as a retry.
        renewed = true;
        continue;
      }
      const delay = attempt < maxRetries ? retryDelay(err, retryAfter, attempt) : null;
      if (delay === null) throw err;
      attempt++;
      await sleep(delay, options.signal);
      if (options.signal?.aborted) throw options.signal.reason;
    }
  }

  private attemptSignal(signal?: AbortSignal): AbortSignal {
    const timeout = AbortSignal.timeout(this.timeout);
    return signal ? AbortSignal.any([signal, timeout]) : timeout;
  }

  private transportError(thrown: unknown): KeenError {
    if (thrown instanceof KeenError) return thrown;
    const e = thrown as Error | undefined;
    if (e?.name === 'TimeoutError') {
      return new TimeoutError({
        type: 'CONNECTION_ERROR',
        code: 'TIMEOUT',
        message: `no answer from ${this.baseUrl} within ${this.timeout} ms`,
        cause: thrown,
      });
    }
    const cause = e?.cause instanceof Error ? e.cause.message : e?.message;
    return new ConnectionError({
      type: 'CONNECTION_ERROR',
      code: 'CONNECTION_FAILED',
      message: `cannot reach ${this.baseUrl}: ${cause}`,
      cause: thrown,
    });
  }

  private authorization(): string | null {
    if (this.apiKey) return `ApiKey ${this.apiKey}`;
    if (this.accessToken) return `Bearer ${this.accessToken}`;
    return null;
  }

  /**
   * Trades the refresh token for a new pair when `expired` is still the current
   * access token. Concurrent callers share one refresh: a refresh token works
   * once, and presenting it twice would revoke the whole family.
   */
  private async renew(expired: string): Promise<boolean> {
    if (!this.refreshToken) return false;
    if (this.accessToken !== expired && !this.refreshing) return true; // already rotated by another request
    this.refreshing ??= (async () => {
      try {
        // Never retried: had the first answer been lost, a second try would present a dead token.
        const r = await this.send<RefreshResponse>(
          'POST',
          '/v1/auth/refresh',
          { body: { refresh_token: this.refreshToken } },
          false,
          0,
        );
        this.accessToken = r.tokens.access_token;
        this.refreshToken = r.tokens.refresh_token;
        await this.onTokens?.(r.tokens);
      } finally {
        this.refreshing = null;
      }
    })();
    await this.refreshing;
    return true;
  }

  private streamContext(): StreamContext {
    return {
      baseUrl: this.baseUrl,
      timeout: this.timeout,
      authorization: () => this.authorization(),
      renew: async () => {
        const auth = this.authorization();
        return auth?.startsWith('Bearer ') ? this.renew(auth.slice(7)) : false;
      },
      webSocket: () => resolveWebSocket(this.webSocketClass),
      session: (id, signal) => this.sessions.get(id, signal ? { signal } : {}),
      events: (id, after, signal) => this.sessions.events(id, { after, limit: 1000, ...(signal ? { signal } : {}) }),
      running: async (signal) =>
        (
          await this.request<{ sessions: Session[] }>('GET', '/v1/sessions', {
            query: { status: 'running', limit: 100 },
            ...(signal ? { signal } : {}),
          })
        ).sessions,
      // Through the client's own fetch, retries and token refresh (a browser opens the stream with a ticket).
      ticket: async (signal) =>
        (await this.request<{ ticket: string }>('POST', '/v1/stream/tickets', { ...(signal ? { signal } : {}) }))
          .ticket,
    };
  }
}

/** How long to wait before retrying after `err`, or null when it is not worth retrying. */
function retryDelay(err: KeenError, retryAfterSeconds: number | null, attempt: number): number | null {
  const retryable =
    err instanceof ConnectionError ||
    err instanceof TimeoutError ||
    err.status === 429 ||
    (err.status !== null && err.status >= 500) ||
    // The first attempt is still running on the server (its answer was lost): wait for it.
    err.code === 'IDEMPOTENCY_KEY_IN_USE';
  if (!retryable) return null;
  if (retryAfterSeconds !== null)
    return retryAfterSeconds * 1000 <= MAX_RETRY_AFTER_MS ? retryAfterSeconds * 1000 : null;
  return backoffDelay(attempt);
}
