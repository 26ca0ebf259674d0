/**
 * Checks a webhook the gateway sent (Standard Webhooks): an HMAC-SHA256 over
 * `${webhook-id}.${webhook-timestamp}.${raw body}` keyed with the base64 part of
 * the `whsec_...` secret. Web Crypto only, so it runs in Node 20+, browsers,
 * Deno and edge runtimes alike.
 */
import type { WebhookMessage } from './types.js';

/** The request headers, as a plain object (Node's `req.headers`, any case) or a fetch `Headers`. */
export type WebhookHeaders = Record<string, string | string[] | undefined> | Headers;

export interface VerifyWebhookOptions {
  /** How far `webhook-timestamp` may be from now, either way, in seconds (default 300). */
  toleranceSeconds?: number;
  /** The current time (default: now); a Date or milliseconds since the epoch. */
  now?: Date | number;
}

/** Thrown by `verifyWebhook()`: the message is not one the gateway signed with this secret, or is too old. */
export class WebhookVerificationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebhookVerificationError';
  }
}

const SECRET_PREFIX = 'whsec_';
const DEFAULT_TOLERANCE_SECONDS = 300;

/**
 * Verifies a webhook and returns its parsed message, or throws a
 * `WebhookVerificationError`.
 *
 * - `payload`: the raw request body, exactly as received (not re-serialized JSON).
 * - `secret`: the endpoint's `whsec_...` secret; several (an array) while you
 *   switch to a rotated one. The message passes when any of the
 *   `webhook-signature` entries matches any secret.
 * - A missing header, a timestamp that is not a number or is more than
 *   `toleranceSeconds` away from now, or a body that is not JSON is refused.
 *
 * ```ts
 * const message = await verifyWebhook(rawBody, req.headers, process.env.KEEN_WEBHOOK_SECRET!);
 * if (message.type === 'session.completed') console.log(message.data.id);
 * ```
 */
export async function verifyWebhook(
  payload: string | Uint8Array,
  headers: WebhookHeaders,
  secret: string | readonly string[],
  options: VerifyWebhookOptions = {},
): Promise<WebhookMessage> {
  const id = header(headers, 'webhook-id');
  const timestamp = header(headers, 'webhook-timestamp');
  const signature = header(headers, 'webhook-signature');
  if (!id || !timestamp || !signature)
    throw new WebhookVerificationError('missing webhook-id, webhook-timestamp or webhook-signature header');

  if (!/^\d{1,15}$/.test(timestamp)) throw new WebhookVerificationError('webhook-timestamp is not a number of seconds');
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  const nowMs =
    options.now === undefined ? Date.now() : typeof options.now === 'number' ? options.now : options.now.getTime();
  const now = Math.floor(nowMs / 1000);
  const ts = Number(timestamp);
  if (ts < now - tolerance) throw new WebhookVerificationError('webhook-timestamp is too old');
  if (ts > now + tolerance) throw new WebhookVerificationError('webhook-timestamp is too far in the future');

  const secrets = typeof secret === 'string' ? [secret] : [...secret];
  if (secrets.length === 0) throw new TypeError('verifyWebhook: no secret given');
  const body = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
  const signed = concat(new TextEncoder().encode(`${id}.${timestamp}.`), body);

  const given: Uint8Array[] = [];
  for (const entry of signature.split(' ')) {
    const comma = entry.indexOf(',');
    if (comma < 0 || entry.slice(0, comma) !== 'v1') continue;
    const bytes = fromBase64(entry.slice(comma + 1));
    if (bytes) given.push(bytes);
  }
  if (given.length === 0) throw new WebhookVerificationError('no v1 signature in webhook-signature');

  let matched = false;
  for (const s of secrets) {
    const expected = await hmacSha256(keyOf(s), signed);
    // Compare with every entry (no early exit), so the time taken says nothing about which matched.
    for (const g of given) if (constantTimeEqual(expected, g)) matched = true;
  }
  if (!matched) throw new WebhookVerificationError('no matching signature');

  const text = typeof payload === 'string' ? payload : new TextDecoder().decode(payload);
  let message: unknown;
  try {
    message = JSON.parse(text);
  } catch {
    throw new WebhookVerificationError('the body is not JSON');
  }
  if (!message || typeof message !== 'object' || Array.isArray(message))
    throw new WebhookVerificationError('the body is not a JSON object');
  return message as WebhookMessage;
}

/** One header's value, whatever the case of its name; a repeated header's values joined by spaces. */
function header(headers: WebhookHeaders, name: string): string | null {
  if (typeof (headers as Headers).get === 'function' && typeof (headers as Headers).has === 'function')
    return (headers as Headers).get(name);
  const record = headers as Record<string, string | string[] | undefined>;
  for (const [k, v] of Object.entries(record)) {
    if (k.toLowerCase() !== name || v === undefined) continue;
    return Array.isArray(v) ? v.join(' ') : v;
  }
  return null;
}

/** The HMAC key of a `whsec_...` secret: the base64-decoded part after the prefix. */
function keyOf(secret: string): Uint8Array<ArrayBuffer> {
  const raw = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret;
  const key = fromBase64(raw);
  if (!key || key.length === 0) throw new TypeError('verifyWebhook: the secret is not whsec_<base64>');
  return key;
}

async function hmacSha256(key: Uint8Array<ArrayBuffer>, data: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) throw new Error('verifyWebhook needs Web Crypto (globalThis.crypto.subtle)');
  const k = await subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await subtle.sign('HMAC', k, data));
}

function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** Standard base64 (padding optional), or null when it is not base64. */
function fromBase64(s: string): Uint8Array<ArrayBuffer> | null {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.replace(/=+$/, '').length % 4 === 1) return null;
  let bin: string;
  try {
    bin = atob(s.padEnd(Math.ceil(s.length / 4) * 4, '='));
  } catch {
    return null;
  }
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
