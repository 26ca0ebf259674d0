import { GatewayError } from '../errors.js';

/**
 * One account per mailbox, however it is spelled: Unicode NFKC (fullwidth and
 * compatibility forms fold to ASCII), trimmed, lower-cased. Control characters,
 * whitespace inside, and anything not shaped like an address are refused.
 */
export function normalizeEmail(value: unknown, field = 'email'): string {
  const bad = (message: string) =>
    new GatewayError('INVALID_FIELD', `${field} ${message}`, { details: [{ field, message }] });
  if (typeof value !== 'string') throw bad('must be a string');
  const email = value.normalize('NFKC').trim().toLowerCase();
  if (email.length === 0 || email.length > 320) throw bad('must be 1 to 320 characters');
  if (/[\u0000-\u001f\u007f-\u009f\s]/.test(email)) throw bad('must not contain whitespace or control characters');
  if (!/^[^@]{1,64}@[^@]+\.[^@.]+$/.test(email) || /[<>()[\]\\,;:"]/.test(email)) throw bad('must be an email address');
  return email;
}

/**
 * True when `value` names the mailbox `email` (stored normalized), compared in
 * the normalized form every lookup uses: `ADMIN@example.com`, ` admin@example.com `
 * and fullwidth spellings are the same address. Never throws: a value that is
 * not an email address names no mailbox.
 */
export function sameEmail(value: string, email: string): boolean {
  if (!value.includes('@')) return false;
  try {
    return normalizeEmail(value) === normalizeEmail(email);
  } catch {
    return false;
  }
}
