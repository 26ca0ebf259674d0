import { promises as dns, type LookupAddress, type LookupOptions } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { performance } from 'node:perf_hooks';
import { GatewayError } from '../errors.js';
import { firstForbidden } from './address-policy.js';
import { signWebhook } from './signing.js';
import { hostOf, validateWebhookUrl } from './url.js';

export const WEBHOOK_USER_AGENT = 'keen-gateway-webhooks/1';

/** Resolves a host name to every address it has (the default is the system resolver, `dns.lookup` with `all`). */
export type Resolver = (hostname: string) => Promise<LookupAddress[]>;

export const systemResolver: Resolver = (hostname) => dns.lookup(hostname, { all: true, verbatim: true });

export interface WebhookSenderOptions {
  /** `webhooks.allow_private_targets`: when false, private/loopback/link-local/reserved targets are refused. */
  allowPrivateTargets: boolean;
  /** From the start of the attempt until the TCP connection is up, DNS included. Default 5 s. */
  connectTimeoutMs?: number;
  /** From the start of the attempt until the response (status and bounded body) is read. Default 10 s. */
  totalTimeoutMs?: number;
  /** Response body bytes read (and discarded) before the connection is closed. Default 64 KiB. */
  maxResponseBytes?: number;
  resolver?: Resolver;
}

/** One POST of one message. `timestampSeconds` is the attempt's time, signed with the body. */
export interface WebhookRequest {
  url: string;
  id: string;
  timestampSeconds: number;
  body: string;
  secret: string;
  /** Secrets derived from rotated-out server secrets: the message is signed with these too. */
  previousSecrets?: string[];
}

/**
 * What one attempt came to. `failed` is worth retrying (network error, timeout,
 * non-2xx status, redirect); `refused` is not (the target is not allowed).
 * `error` is short and carries no secret: never the URL, headers or body.
 */
export interface AttemptResult {
  outcome: 'delivered' | 'failed' | 'refused';
  statusCode: number | null;
  error: string | null;
  durationMs: number;
  /** The first bytes of the receiver's answer (at most EXCERPT_BYTES), as text; null when none came. */
  responseExcerpt?: string | null;
}

/** How much of a receiver's answer the delivery log keeps. */
export const EXCERPT_BYTES = 1024;

/** Raised inside the connect-time lookup when a resolved address is not allowed. */
class TargetRefusedError extends Error {
  readonly code = 'ERR_WEBHOOK_TARGET_REFUSED';
}

/**
 * POSTs signed webhook messages with the SSRF rules applied where they cannot be
 * dodged: the host name is resolved by our own `lookup` at connect time and
 * EVERY address it returns is checked, so a name that resolves to a public
 * address when the URL is validated and to 127.0.0.1 a moment later (DNS
 * rebinding) is still refused, and the socket connects only to an address that
 * was checked. Redirects are never followed (node:http does not follow them; a
 * 3xx is a failed attempt). `agent: false` gives every attempt its own
 * connection and keeps any global agent, and with it any proxy configured
 * through the environment, out of the path.
 */
export class WebhookSender {
  private readonly allowPrivateTargets: boolean;
  private readonly connectTimeoutMs: number;
  private readonly totalTimeoutMs: number;
  private readonly maxResponseBytes: number;
  private readonly resolver: Resolver;

  constructor(options: WebhookSenderOptions) {
    this.allowPrivateTargets = options.allowPrivateTargets;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 5_000;
    this.totalTimeoutMs = options.totalTimeoutMs ?? 10_000;
    this.maxResponseBytes = options.maxResponseBytes ?? 64 * 1024;
    this.resolver = options.resolver ?? systemResolver;
  }

  /** The longest one attempt can take; the outbox's claim lease must exceed it. */
  get maxAttemptMs(): number {
    return this.totalTimeoutMs;
  }

  /** One attempt; never throws. */
  async send(request: WebhookRequest): Promise<AttemptResult> {
    const started = performance.now();
    const head: Buffer[] = [];
    let headBytes = 0;
    const result = (
      outcome: AttemptResult['outcome'],
      statusCode: number | null,
      error: string | null,
    ): AttemptResult => ({
      outcome,
      statusCode,
      error: error === null ? null : error.slice(0, 200),
      durationMs: performance.now() - started,
      responseExcerpt: headBytes === 0 ? null : excerpt(Buffer.concat(head)),
    });

    let url: URL;
    try {
      // Again at send time: the URL was stored earlier, and the policy may have changed since.
      url = validateWebhookUrl(request.url, { allowPrivateTargets: this.allowPrivateTargets });
    } catch (err) {
      const message = err instanceof GatewayError ? err.message : 'webhook_url is not valid';
      return result('refused', null, `refused: ${message}`);
    }

    const body = Buffer.from(request.body, 'utf8');
    const transport = url.protocol === 'https:' ? https : http;

    return new Promise<AttemptResult>((resolve) => {
      let settled = false;
      let statusCode: number | null = null;
      const finish = (r: AttemptResult): void => {
        if (settled) return;
        settled = true;
        clearTimeout(connectTimer);
        clearTimeout(totalTimer);
        req.destroy();
        resolve(r);
      };

      const req = transport.request({
        method: 'POST',
        protocol: url.protocol,
        hostname: hostOf(url),
        port: url.port === '' ? undefined : Number(url.port),
        path: `${url.pathname}${url.search}`,
        agent: false,
        lookup: this.lookup,
        headers: {
          'content-type': 'application/json',
          'content-length': String(body.length),
          'user-agent': WEBHOOK_USER_AGENT,
          'webhook-id': request.id,
          'webhook-timestamp': String(request.timestampSeconds),
          // One signature per secret, space-separated (Standard Webhooks): receivers holding the
          // secret from before a JWT_SECRET rotation keep verifying during the overlap.
          'webhook-signature': [request.secret, ...(request.previousSecrets ?? [])]
            .map((s) => signWebhook(s, request.id, request.timestampSeconds, body))
            .join(' '),
        },
      });

      const connectTimer = setTimeout(
        () => finish(result('failed', null, `timeout: no connection within ${this.connectTimeoutMs} ms`)),
        this.connectTimeoutMs,
      );
      const totalTimer = setTimeout(
        () => finish(result('failed', statusCode, `timeout: no complete response within ${this.totalTimeoutMs} ms`)),
        this.totalTimeoutMs,
      );
      req.on('socket', (socket) => {
        if (!socket.connecting) clearTimeout(connectTimer);
        else socket.once('connect', () => clearTimeout(connectTimer));
      });

      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err instanceof TargetRefusedError) return finish(result('refused', null, `refused: ${err.message}`));
        finish(result('failed', statusCode, describeNetworkError(err)));
      });

      req.on('response', (res) => {
        const status = (statusCode = res.statusCode ?? 0);
        const complete = (): void => {
          if (status >= 200 && status < 300) finish(result('delivered', status, null));
          else finish(result('failed', status, `HTTP ${status}`));
        };
        if (status >= 300 && status < 400) {
          // Never followed: a redirect could point anywhere, the private network included.
          return finish(result('failed', status, `redirect (HTTP ${status}) not followed`));
        }
        // Read and discard a bounded amount, so a receiver cannot keep us busy with a large body.
        let received = 0;
        res.on('data', (chunk: Buffer) => {
          if (headBytes < EXCERPT_BYTES) {
            const part = chunk.subarray(0, EXCERPT_BYTES - headBytes);
            head.push(part);
            headBytes += part.length;
          }
          received += chunk.length;
          if (received >= this.maxResponseBytes) complete();
        });
        res.on('end', complete);
        // The status line arrived; a body cut short does not change what the receiver answered.
        res.on('aborted', complete);
        res.on('error', complete);
      });

      req.end(body);
    });
  }

  /**
   * net's lookup hook: resolve, then refuse unless every address is allowed (firstForbidden).
   */
  private readonly lookup: LookupFunction = (hostname: string, options: LookupOptions, callback) => {
    this.resolver(hostname).then(
      (found) => {
        const addresses = found.filter((a) => !options.family || options.family === a.family);
        if (addresses.length === 0) {
          const err: NodeJS.ErrnoException = new Error(`${hostname} has no usable address`);
          err.code = 'ENOTFOUND';
          return callback(err, '', 0);
        }
        if (!this.allowPrivateTargets) {
          const bad = firstForbidden(addresses);
          if (bad) {
            return callback(
              new TargetRefusedError(
                `${hostname} resolves to ${bad.address}, a private, loopback, link-local or reserved address`,
              ),
              '',
              0,
            );
          }
        }
        if (options.all) return callback(null, addresses);
        callback(null, addresses[0]!.address, addresses[0]!.family);
      },
      (err: NodeJS.ErrnoException) => callback(err, '', 0),
    );
  };
}

/** Bytes as text for the log: invalid UTF-8 (a cut sequence too) and NUL become U+FFFD. */
function excerpt(bytes: Buffer): string {
  return bytes.toString('utf8').replace(/\u0000/g, '\uFFFD');
}

/** A short, secret-free reason for a failed connection. */
function describeNetworkError(err: NodeJS.ErrnoException): string {
  const code = typeof err.code === 'string' ? err.code : 'error';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `dns: ${code}`;
  if (/CERT|SSL|TLS/.test(code)) return `tls: ${code}`;
  return `network: ${code}`;
}
