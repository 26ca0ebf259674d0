import { ConnectionError, KeenError, RateLimitError, TimeoutError, errorFromResponse } from './errors.js';

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

export interface KeenClientOptions {
  baseUrl: string;
  /** `ak_live_...`: sent as `Authorization: ApiKey ...`. */
  apiKey?: string;
  /** A JWT access token: sent as `Authorization: Bearer ...`. */
  accessToken?: string;
  /** Milliseconds per attempt (default 30 s). */
  timeout?: number;
  /** Retries of network errors, 429 and 5xx (default 2). */
  maxRetries?: number;
  fetch?: FetchLike;
}

export interface RequestOptions {
  body?: unknown;
  query?: Record<string, string | number | undefined | null>;
  /** Reused across retries; one is generated for every POST when not given. */
  idempotencyKey?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The keen-gateway client. Every POST carries an idempotency key that its
 * retries reuse, so a retried request never takes effect twice.
 */
export class KeenClient {
  readonly baseUrl: string;
  private readonly options: Required<Pick<KeenClientOptions, 'timeout' | 'maxRetries'>> & KeenClientOptions;
  private readonly fetchImpl: FetchLike;

  constructor(options: KeenClientOptions) {
    if (!options.baseUrl) throw new TypeError('baseUrl is required');
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.options = { timeout: 30_000, maxRetries: 2, ...options };
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
  }

  private authorization(): string | undefined {
    if (this.options.apiKey) return `ApiKey ${this.options.apiKey}`;
    if (this.options.accessToken) return `Bearer ${this.options.accessToken}`;
    return undefined;
  }

  /** Sends one API request with retries; resolves with the parsed success body. */
  async request<T = Record<string, unknown>>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const url = new URL(this.baseUrl + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': 'keen-sdk/0.1' };
    const auth = this.authorization();
    if (auth) headers.authorization = auth;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    if (method === 'POST') headers['idempotency-key'] = opts.idempotencyKey ?? crypto.randomUUID();
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    for (let attempt = 0; ; attempt++) {
      let err: KeenError;
      try {
        const res = await this.fetchImpl(url.toString(), { method, headers, body, signal: AbortSignal.timeout(this.options.timeout) });
        const text = await res.text();
        let parsed: unknown = null;
        try {
          parsed = text ? JSON.parse(text) : null;
        } catch {
          parsed = null;
        }
        if (res.ok) return parsed as T;
        err = errorFromResponse(res.status, parsed, res.headers);
      } catch (thrown) {
        if (thrown instanceof KeenError) throw thrown;
        const name = (thrown as Error)?.name;
        err =
          name === 'TimeoutError' || name === 'AbortError'
            ? new TimeoutError({ type: 'CONNECTION_ERROR', code: 'TIMEOUT', message: `no answer from ${this.baseUrl} within ${this.options.timeout} ms` })
            : new ConnectionError({ type: 'CONNECTION_ERROR', code: 'CONNECTION_FAILED', message: `cannot reach ${this.baseUrl}: ${(thrown as Error)?.cause instanceof Error ? ((thrown as Error).cause as Error).message : (thrown as Error)?.message}` });
      }
      const retryable = err instanceof ConnectionError || err instanceof TimeoutError || err.status === 429 || (err.status !== null && err.status >= 500);
      if (!retryable || attempt >= this.options.maxRetries) throw err;
      const retryAfter = err instanceof RateLimitError && err.retryAfter !== null ? err.retryAfter * 1000 : null;
      const backoff = Math.min(8000, 250 * 2 ** attempt) * (0.5 + Math.random() / 2);
      await sleep(retryAfter ?? backoff);
    }
  }

  /** The authenticated user. */
  me() {
    return this.request<{ user: Record<string, unknown>; scopes: string[] }>('GET', '/v1/me');
  }
}
