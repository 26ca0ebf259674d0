/**
 * The one place audit details are made safe to store. Whatever a caller passes,
 * the result is plain JSON (objects, arrays, strings, finite numbers, booleans,
 * null), bounded in depth, width and length, with no credential in it:
 *
 * - a key that names a secret (password, token, api key, cookie, otp, ...) has
 *   its whole value replaced by `[REDACTED]`, at any depth;
 * - a string that looks like a credential (a JWT, an `ak_live_`/`ak_test_` key,
 *   a `Bearer`/`ApiKey` header value, an `otpauth://` URL, a refresh token, a
 *   base32 TOTP secret, a PEM private key, a recovery code) is replaced too,
 *   whatever key it sits under.
 */

export const REDACTED = '[REDACTED]';
export const TRUNCATED = '[TRUNCATED]';

export interface RedactLimits {
  /** Longest string kept, in UTF-16 units; longer ones are cut and marked. */
  maxStringLength: number;
  /** Deepest nesting kept; deeper values become `[TRUNCATED]`. */
  maxDepth: number;
  /** Most keys kept per object and elements per array. */
  maxKeys: number;
  /** Upper bound of the canonical JSON text of the whole details object. */
  maxTotalLength: number;
}

export const DEFAULT_REDACT_LIMITS: RedactLimits = {
  maxStringLength: 1000,
  maxDepth: 8,
  maxKeys: 100,
  maxTotalLength: 16_384,
};

/** Key names whose value is a secret, whatever it looks like. */
const SECRET_KEY =
  /password|passwd|passphrase|secret|token|api[_-]?key|authorization|cookie|recovery|otp|totp|mfa_token|ticket|private|credential|jwt|signature|^key$/i;

/** Usage counters (`input_tokens: 1200`) are not secrets: a finite number under exactly these names is kept. */
const TOKEN_COUNTER_KEY = /^(input|output|total|prompt|completion|cached|max|reserved|used)_?tokens$/i;

/** Credential shapes found anywhere inside a string value. */
const SECRET_VALUE: RegExp[] = [
  /eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*/, // JWT (RFC 7519 compact form; header starts with {")
  /ak_(?:live|test)_/i, // our API keys
  /\b(?:bearer|apikey)\s+\S/i, // Authorization header values
  /\bbasic\s+[A-Za-z0-9+/]{8,}={0,2}(?:\s|$)/i,
  /otpauth:\/\//i, // TOTP provisioning URLs carry the secret
  /\brt_[A-Za-z0-9_-]{20,}/, // refresh tokens
  /-----BEGIN [A-Z ]*PRIVATE KEY-----/,
];

/** Whole-string shapes: a base32 TOTP secret, a recovery code. */
const SECRET_WHOLE_VALUE: RegExp[] = [/^[A-Z2-7]{16,}=*$/, /^[0-9a-hjkmnp-tv-z]{5}-[0-9a-hjkmnp-tv-z]{5}$/];

/** Strings longer than this are not even scanned: they are replaced. */
const MAX_SCANNED_LENGTH = 1_000_000;

/** True when a key name says its value is a secret. */
export function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key);
}

/** True when a string looks like a credential. */
export function looksLikeSecret(value: string): boolean {
  if (SECRET_WHOLE_VALUE.some((re) => re.test(value))) return true;
  return SECRET_VALUE.some((re) => re.test(value));
}

/**
 * Makes a string storable on both dialects: lone surrogates become U+FFFD (they
 * would not survive UTF-8, and the stored text must hash like the text we hashed)
 * and NUL becomes U+FFFD (Postgres text refuses it).
 */
export function wellFormed(value: string): string {
  return value.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]|\u0000/g, '\uFFFD');
}

/** Redacts, sanitizes and bounds one free-text field (user agent, actor id, ...). Null stays null. */
export function redactField(value: string | null | undefined, maxLength: number): string | null {
  if (value === null || value === undefined) return null;
  const s = typeof value === 'string' ? value : String(value);
  if (s.length > MAX_SCANNED_LENGTH || looksLikeSecret(s)) return REDACTED;
  return truncate(wellFormed(s), maxLength);
}

function truncate(s: string, max: number): string {
  if (s.length <= max) return s;
  // Do not cut a surrogate pair in half.
  let end = max;
  const code = s.charCodeAt(end - 1);
  if (code >= 0xd800 && code <= 0xdbff) end -= 1;
  return `${s.slice(0, end)}…[truncated ${s.length - end} chars]`;
}

/**
 * Returns a redacted, JSON-safe, bounded copy of audit details. Never throws:
 * functions and symbols are dropped, bigint becomes a decimal string, cycles and
 * throwing getters become markers.
 */
export function redactDetails(details: unknown, limits: RedactLimits = DEFAULT_REDACT_LIMITS): Record<string, unknown> {
  if (details === undefined || details === null) return {};
  const out = redactValue(details, 0, new WeakSet(), limits);
  const obj: Record<string, unknown> = isPlainRecord(out) ? out : { value: out };
  // A bound on the whole: a caller cannot make one entry arbitrarily large.
  let size = 0;
  try {
    size = JSON.stringify(obj).length;
  } catch {
    return { truncated: true };
  }
  if (size > limits.maxTotalLength) return { truncated: true, original_size: size };
  return obj;
}

function isPlainRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function setKey(target: Record<string, unknown>, key: string, value: unknown): void {
  // defineProperty, so a key named __proto__ is an ordinary key and not a prototype change.
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function redactValue(value: unknown, depth: number, seen: WeakSet<object>, limits: RedactLimits): unknown {
  switch (typeof value) {
    case 'string':
      if (value.length > MAX_SCANNED_LENGTH) return TRUNCATED;
      if (looksLikeSecret(value)) return REDACTED;
      return truncate(wellFormed(value), limits.maxStringLength);
    case 'number':
      return Number.isFinite(value) ? value : null;
    case 'boolean':
      return value;
    case 'bigint':
      return value.toString();
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
    default:
      break;
  }
  if (value === null) return null;
  const obj = value as object;
  if (depth >= limits.maxDepth) return TRUNCATED;
  if (seen.has(obj)) return '[Circular]';
  seen.add(obj);
  try {
    if (obj instanceof Date) return Number.isFinite(obj.getTime()) ? obj.toISOString() : null;
    if (obj instanceof Error) {
      return redactValue({ name: obj.name, message: obj.message }, depth, seen, limits);
    }
    if (ArrayBuffer.isView(obj) || obj instanceof ArrayBuffer) return `[binary ${obj.byteLength} bytes]`;
    if (obj instanceof Map)
      return redactValue(Object.fromEntries([...obj].map(([k, v]) => [String(k), v])), depth, seen, limits);
    if (obj instanceof Set) return redactValue([...obj], depth, seen, limits);
    if (Array.isArray(obj)) {
      const items = obj.slice(0, limits.maxKeys).map((v) => {
        const r = redactValue(v, depth + 1, seen, limits);
        return r === undefined ? null : r;
      });
      if (obj.length > limits.maxKeys) items.push(`[${obj.length - limits.maxKeys} more]`);
      return items;
    }
    const out: Record<string, unknown> = {};
    let keys: string[];
    try {
      keys = Object.keys(obj);
    } catch {
      return '[Unreadable]';
    }
    let kept = 0;
    for (const rawKey of keys) {
      if (kept >= limits.maxKeys) {
        setKey(out, '…', `${keys.length - kept} more keys`);
        break;
      }
      const key = truncate(wellFormed(rawKey), 200);
      let v: unknown;
      try {
        v = (obj as Record<string, unknown>)[rawKey];
      } catch {
        setKey(out, key, '[Unreadable]');
        kept++;
        continue;
      }
      if (isSecretKey(rawKey) && !(typeof v === 'number' && Number.isFinite(v) && TOKEN_COUNTER_KEY.test(rawKey))) {
        // Keep the fact that a value was there (useful when auditing), never the value.
        if (v !== undefined && typeof v !== 'function' && typeof v !== 'symbol') {
          setKey(out, key, REDACTED);
          kept++;
        }
        continue;
      }
      const r = redactValue(v, depth + 1, seen, limits);
      if (r !== undefined) {
        setKey(out, key, r);
        kept++;
      }
    }
    return out;
  } finally {
    seen.delete(obj);
  }
}
