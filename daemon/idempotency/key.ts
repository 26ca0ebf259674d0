import { createHash } from 'node:crypto';
import { invalidField } from '../errors.js';

/** 1..255 printable ASCII characters (space through tilde), as the `Idempotency-Key` header allows. */
const KEY_RE = /^[\x20-\x7e]{1,255}$/;

/** True for a well-formed idempotency key. */
export function isIdempotencyKey(value: unknown): value is string {
  return typeof value === 'string' && KEY_RE.test(value);
}

/** Throws 400 INVALID_FIELD unless `value` is a well-formed idempotency key. */
export function assertIdempotencyKey(value: unknown, field = 'Idempotency-Key'): asserts value is string {
  if (!isIdempotencyKey(value)) {
    throw invalidField(`${field} must be 1 to 255 printable ASCII characters`, [
      { field, message: 'must be 1 to 255 printable ASCII characters' },
    ]);
  }
}

/**
 * A stable sha256 (hex) of a request: JSON with object keys sorted, so the same
 * body sent with its keys in another order hashes the same. Include what makes
 * two requests "the same" (method, route, body), never a secret.
 */
export function hashRequest(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex');
}

/** JSON with object keys sorted at every depth; `undefined` members dropped as JSON.stringify does. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined && typeof v !== 'function')
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}
