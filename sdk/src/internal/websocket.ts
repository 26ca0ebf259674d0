import { ConnectionError, type KeenError, TimeoutError, errorFromResponse } from '../errors.js';

/**
 * The part of the WHATWG WebSocket the SDK uses. Node 22's global WebSocket and
 * the `ws` package both provide it, and both accept `{ headers }` as the second
 * constructor argument (undici's WebSocketInit, ws's options).
 */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  // biome-ignore lint/suspicious/noExplicitAny: the browser's and ws's listener types must both fit
  addEventListener(type: string, listener: (event: any) => void): void;
}

/**
 * A WebSocket class: `globalThis.WebSocket`, `ws`, or one given in the client's options.
 * Where headers can be sent (Node, Bun) it is called as `new Ctor(url, { headers })`;
 * elsewhere (browsers, workers, Deno, React Native) as `new Ctor(url)`, the WHATWG way.
 */
export type WebSocketConstructor = new (url: string, init?: { headers?: Record<string, string> }) => WebSocketLike;

/**
 * Whether this runtime's WebSockets take an `Authorization` header. True only
 * where that is known: Node (and Bun), whose global WebSocket (undici) and `ws`
 * both accept `{ headers }`. Everywhere else (a page, a worker, Deno, React
 * Native, an Electron renderer) the stream is opened with a ticket in the URL,
 * which works with any WebSocket.
 */
export function canSendHeaders(): boolean {
  const g = globalThis as { process?: { versions?: { node?: unknown } }; document?: unknown; Deno?: unknown };
  return typeof g.process?.versions?.node === 'string' && g.document === undefined && g.Deno === undefined;
}

/**
 * The WebSocket class a stream opens: the one given in the client's options; on Node (and Bun) `ws`, the SDK's
 * dependency, even where a global WebSocket exists (Node 22+, undici's): only `ws` tells the HTTP answer of a
 * refused upgrade (401, 403, 404...), which the stream throws instead of retrying as a network failure; elsewhere
 * (browsers, workers, Deno), or where `ws` cannot be loaded, `globalThis.WebSocket`.
 */
export async function resolveWebSocket(given?: WebSocketConstructor): Promise<WebSocketConstructor> {
  if (given) return given;
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (global && !canSendHeaders()) return global;
  try {
    // Loaded only here, on Node, when a stream opens: browser bundles never reach it
    // (they have a global WebSocket; the package's `browser` field maps `ws` to nothing).
    const mod = (await import('ws')) as unknown as { default?: WebSocketConstructor; WebSocket?: WebSocketConstructor };
    const Ctor = mod.default ?? mod.WebSocket;
    if (typeof Ctor !== 'function') throw new TypeError('the `ws` package exports no WebSocket class');
    return Ctor;
  } catch (err) {
    if (global) return global;
    throw new ConnectionError({
      type: 'CONNECTION_ERROR',
      code: 'NO_WEBSOCKET',
      message: 'no WebSocket implementation: use Node 22+, or install the `ws` package',
      cause: err,
    });
  }
}

/** What a connection hands to its reader: a parsed message, or the end of the connection. */
export type Frame = { kind: 'message'; data: unknown } | { kind: 'closed'; code: number; reason: string };

/** Without any traffic for this long (the server pings every 30 s), a connection is presumed dead. */
const IDLE_MS = 75_000;

/**
 * One stream connection, open once the server said `connection_established`.
 * Messages are queued until read, so a slow consumer loses nothing.
 */
export class Connection {
  private readonly frames: Frame[] = [];
  private waiter: ((f: Frame) => void) | null = null;
  private ended = false;
  private idle: ReturnType<typeof setTimeout> | null = null;

  private constructor(private readonly socket: WebSocketLike) {}

  /**
   * Opens `url` and waits for `connection_established`. A refused upgrade
   * rejects with the error its HTTP answer maps to (401, 404, 503...) when the
   * implementation exposes it (`ws` does), else with a ConnectionError.
   * `headers` null: the WHATWG constructor, URL only (a browser; the credential
   * is a ticket in `url`). `label` names the connection in errors: never the
   * URL when it holds a ticket.
   */
  static open(
    Ctor: WebSocketConstructor,
    url: string,
    headers: Record<string, string> | null,
    timeoutMs: number,
    signal?: AbortSignal,
    label: string = url,
    hint = '',
  ): Promise<Connection> {
    return new Promise((resolve, reject) => {
      let socket: WebSocketLike;
      try {
        socket = headers === null ? new Ctor(url) : new Ctor(url, { headers });
      } catch (err) {
        reject(
          new ConnectionError({
            type: 'CONNECTION_ERROR',
            code: 'CONNECTION_FAILED',
            message: `cannot open ${label}: ${(err as Error).message}`,
            cause: err,
          }),
        );
        return;
      }
      const conn = new Connection(socket);
      let settled = false;
      let refused: KeenError | null = null;
      let failure: unknown = null;
      const settle = (err: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (err) {
          conn.terminate();
          reject(err);
        } else {
          conn.watch(signal);
          resolve(conn);
        }
      };
      const onAbort = () => settle(signal?.reason ?? new Error('aborted'));
      const timer = setTimeout(
        () =>
          settle(
            new TimeoutError({
              type: 'CONNECTION_ERROR',
              code: 'TIMEOUT',
              message: `no stream connection to ${label} within ${timeoutMs} ms`,
            }),
          ),
        timeoutMs,
      );
      signal?.addEventListener('abort', onAbort, { once: true });

      // `ws` tells the HTTP answer of a refused upgrade; the WHATWG API only says it failed.
      const emitter = socket as unknown as {
        // biome-ignore lint/suspicious/noExplicitAny: each ws event has its own listener arguments
        on?: (event: string, fn: (...args: any[]) => void) => void;
        terminate?: () => void;
      };
      if (typeof emitter.on === 'function') {
        emitter.on(
          'unexpected-response',
          (
            req: { destroy(): void },
            res: AsyncIterable<Buffer> & { statusCode: number; headers: Record<string, string | string[] | undefined> },
          ) => {
            void (async () => {
              let text = '';
              try {
                for await (const chunk of res) text += String(chunk);
              } catch {
                // The body is a courtesy: the status alone decides.
              }
              let body: unknown = null;
              try {
                body = text ? JSON.parse(text) : null;
              } catch {
                body = null;
              }
              refused = errorFromResponse(res.statusCode, body, {
                get: (name) => [res.headers[name.toLowerCase()]].flat()[0] ?? null,
              });
              req.destroy();
              settle(refused);
            })();
          },
        );
        emitter.on('ping', () => conn.touch());
      }
      socket.addEventListener('message', (event: { data: unknown }) => {
        const data = parse(event.data);
        conn.touch();
        if (!settled) {
          if ((data as { type?: unknown } | null)?.type === 'connection_established') settle(null);
          return; // nothing else comes before it
        }
        conn.push({ kind: 'message', data });
      });
      socket.addEventListener('error', (event: { error?: unknown; message?: string }) => {
        failure = event.error ?? event.message ?? 'error';
      });
      socket.addEventListener('close', (event: { code?: number; reason?: string }) => {
        if (!settled) {
          const detail =
            failure instanceof Error
              ? failure.message
              : typeof failure === 'string'
                ? failure
                : `closed with ${event.code ?? 'no code'}`;
          settle(
            refused ??
              new ConnectionError({
                type: 'CONNECTION_ERROR',
                code: 'CONNECTION_FAILED',
                message: `stream connection to ${label} failed: ${detail}${hint}`,
                cause: failure,
              }),
          );
          return;
        }
        conn.push({ kind: 'closed', code: event.code ?? 1006, reason: event.reason ?? '' });
      });
    });
  }

  /** The next message, or the end of the connection. */
  next(): Promise<Frame> {
    const f = this.frames.shift();
    if (f) return Promise.resolve(f);
    if (this.ended) return Promise.resolve({ kind: 'closed', code: 1006, reason: 'ended' });
    return new Promise((resolve) => (this.waiter = resolve));
  }

  send(message: unknown): void {
    this.socket.send(JSON.stringify(message));
  }

  /** Closes the connection; the reader sees the end. */
  close(code = 1000): void {
    if (this.idle) clearTimeout(this.idle);
    try {
      if (this.socket.readyState <= 1) this.socket.close(code);
    } catch {
      // Already closing.
    }
    this.push({ kind: 'closed', code, reason: 'closed by the client' });
  }

  private push(f: Frame): void {
    if (this.ended) return;
    if (f.kind === 'closed') {
      this.ended = true;
      if (this.idle) clearTimeout(this.idle);
    }
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w(f);
    } else this.frames.push(f);
  }

  private watch(signal?: AbortSignal): void {
    this.touch();
    signal?.addEventListener('abort', () => this.close(1000), { once: true });
  }

  /** Any traffic proves the peer alive. */
  private touch(): void {
    if (this.idle) clearTimeout(this.idle);
    if (this.ended) return;
    this.idle = setTimeout(() => {
      this.terminate();
      this.push({ kind: 'closed', code: 1006, reason: 'no traffic: peer presumed dead' });
    }, IDLE_MS);
    (this.idle as { unref?: () => void }).unref?.();
  }

  /** Drops the connection without a closing handshake (a dead peer would never answer one). */
  private terminate(): void {
    const s = this.socket as unknown as { terminate?: () => void };
    try {
      if (typeof s.terminate === 'function') s.terminate();
      else this.socket.close(4000);
    } catch {
      // Already gone.
    }
  }
}

function parse(data: unknown): unknown {
  const text =
    typeof data === 'string'
      ? data
      : data instanceof ArrayBuffer || ArrayBuffer.isView(data)
        ? new TextDecoder().decode(data as ArrayBuffer)
        : String(data);
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
