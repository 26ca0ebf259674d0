import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';

/**
 * Webhook signatures per Standard Webhooks (https://www.standardwebhooks.com/,
 * spec/standard-webhooks.md): `webhook-signature: v1,<base64 HMAC-SHA256 of
 * "${webhook-id}.${webhook-timestamp}.${body}">`, keyed with the base64 part of
 * a `whsec_` secret.
 */

const SECRET_PREFIX = 'whsec_';

/**
 * The signing secret of one user, `whsec_<base64 of 32 bytes>`: HKDF-SHA256 of
 * the server secret with the user id in `info`. Nothing is stored; the same
 * server secret always gives the same user the same secret, and one user's
 * secret says nothing about another's or about the server secret.
 */
export function deriveSigningSecret(serverSecret: Buffer, userId: string): string {
  const key = Buffer.from(
    hkdfSync('sha256', serverSecret, Buffer.alloc(0), `keen-gateway:webhook-signing:${userId}`, 32),
  );
  return `${SECRET_PREFIX}${key.toString('base64')}`;
}

function secretKey(secret: string): Buffer {
  return Buffer.from(secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret, 'base64');
}

/** The `webhook-signature` value for one message: `v1,<base64>`. `timestamp` is unix seconds. */
export function signWebhook(secret: string, id: string, timestamp: number, body: string | Buffer): string {
  const mac = createHmac('sha256', secretKey(secret)).update(`${id}.${timestamp}.`).update(body).digest('base64');
  return `v1,${mac}`;
}

/** Headers as Node's IncomingHttpHeaders, a fetch `Headers`, or a plain record (names matched case-insensitively). */
export type WebhookHeaders = Headers | Record<string, string | string[] | undefined>;

function header(headers: WebhookHeaders, name: string): string | undefined {
  if (typeof (headers as Headers).get === 'function') return (headers as Headers).get(name) ?? undefined;
  for (const [k, v] of Object.entries(headers as Record<string, string | string[] | undefined>)) {
    if (k.toLowerCase() === name) return Array.isArray(v) ? v.join(' ') : v;
  }
  return undefined;
}

/**
 * True when `body` (the raw request body, exactly as received) carries a valid
 * signature from `secret`, and its `webhook-timestamp` is within
 * `toleranceSeconds` of `nowMs` (replay protection). The signature header may
 * list several space-separated `v1,<sig>` values (during a secret rotation); one
 * match is enough. Comparison is constant-time.
 */
export function verifySignature(
  secret: string,
  headers: WebhookHeaders,
  body: string | Buffer,
  toleranceSeconds = 300,
  nowMs: number = Date.now(),
): boolean {
  const id = header(headers, 'webhook-id');
  const ts = header(headers, 'webhook-timestamp');
  const signatures = header(headers, 'webhook-signature');
  if (!id || !ts || !signatures || !/^\d{1,12}$/.test(ts)) return false;
  const timestamp = Number(ts);
  if (Math.abs(nowMs / 1000 - timestamp) > toleranceSeconds) return false;
  const expected = Buffer.from(signWebhook(secret, id, timestamp, body).slice(3), 'base64');
  for (const candidate of signatures.split(' ')) {
    const [version, value] = candidate.split(',', 2);
    if (version !== 'v1' || !value) continue;
    const given = Buffer.from(value, 'base64');
    if (given.length === expected.length && timingSafeEqual(given, expected)) return true;
  }
  return false;
}
