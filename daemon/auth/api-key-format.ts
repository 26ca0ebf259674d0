import { createHash, randomBytes } from 'node:crypto';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
export const API_KEY_PREFIX = 'ak_live_';
const BODY_CHARS = 43; // 32 bytes of entropy in base62 (log62(2^256) = 42.99)
const CHECK_CHARS = 6;
const KEY_RE = new RegExp(`^${API_KEY_PREFIX}[0-9A-Za-z]{${BODY_CHARS}}[0-9A-Za-z]{${CHECK_CHARS}}$`);

/** The last `width` base62 digits of the big-endian number in `buf`, by long division over its bytes (no BigInt). */
function base62(buf: Buffer, width: number): string {
  const digits = Array.from(buf);
  let out = '';
  while (out.length < width) {
    let rem = 0;
    for (let i = 0; i < digits.length; i++) {
      const cur = rem * 256 + digits[i]!;
      digits[i] = Math.floor(cur / 62);
      rem = cur % 62;
    }
    out = BASE62[rem]! + out;
  }
  return out;
}

function checksum(body: string): string {
  return base62(createHash('sha256').update(body).digest().subarray(0, 8), CHECK_CHARS);
}

/** `ak_live_<43 base62 chars: 32 random bytes><6-char checksum>` (docs/API.md). */
export function generateApiKey(): string {
  const body = API_KEY_PREFIX + base62(randomBytes(32), BODY_CHARS);
  return body + checksum(body);
}

/**
 * True when the key is well formed and its checksum matches. A typo or a
 * guessed key is refused here, before any database read.
 */
export function isWellFormedApiKey(key: string): boolean {
  if (!KEY_RE.test(key)) return false;
  const body = key.slice(0, -CHECK_CHARS);
  return checksum(body) === key.slice(-CHECK_CHARS);
}

/** What is stored: sha256 of the whole key. 256 bits of entropy make a slow hash unnecessary. */
export const hashSecret = (value: string): string => createHash('sha256').update(value).digest('hex');
