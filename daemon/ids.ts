import { randomBytes } from 'node:crypto';

/** Type prefixes of every public id (docs/API.md). */
export type IdPrefix = 'usr' | 'ten' | 'key' | 'ses' | 'res' | 'txn' | 'req' | 'aud' | 'rtk' | 'whk' | 'wep' | 'con';

const CROCKFORD = '0123456789abcdefghjkmnpqrstvwxyz';

function encodeTime(ms: number): string {
  let out = '';
  let t = ms;
  for (let i = 0; i < 10; i++) {
    out = CROCKFORD[t % 32]! + out;
    t = Math.floor(t / 32);
  }
  return out;
}

function encodeRandom(bytes: Buffer): string {
  // 16 chars of 5 bits each from 10 random bytes (80 bits), as two 40-bit halves
  // (exact in a double; no BigInt on the per-request path).
  return encode40(bytes, 0) + encode40(bytes, 5);
}

function encode40(bytes: Buffer, at: number): string {
  let v =
    bytes[at]! * 2 ** 32 +
    ((bytes[at + 1]! << 24) >>> 0) +
    (bytes[at + 2]! << 16) +
    (bytes[at + 3]! << 8) +
    bytes[at + 4]!;
  let out = '';
  for (let i = 0; i < 8; i++) {
    out = CROCKFORD[v % 32]! + out;
    v = Math.floor(v / 32);
  }
  return out;
}

/** Random bytes drawn in blocks: one system call per 409 ids instead of one per id. */
const POOL_SIZE = 4096;
let pool = Buffer.alloc(0);
let poolOffset = POOL_SIZE;

function random10(): Buffer {
  if (poolOffset + 10 > pool.length) {
    pool = randomBytes(POOL_SIZE);
    poolOffset = 0;
  }
  const out = pool.subarray(poolOffset, poolOffset + 10);
  poolOffset += 10;
  return out;
}

/**
 * A new id: prefix, underscore, 26 lowercase Crockford base32 chars (ULID layout:
 * 48 bits of milliseconds, then 80 random bits). Ids sort by creation time, which
 * keeps cursor pagination simple; the random part makes them unguessable.
 */
export function newId(prefix: IdPrefix, nowMs: number = Date.now()): string {
  return `${prefix}_${encodeTime(nowMs)}${encodeRandom(random10())}`;
}

const ID_RE = /^[a-z]{3}_[0-9a-hjkmnp-tv-z]{26}$/;

/** True when `value` is a well-formed id of the given prefix. Used to refuse junk before a query. */
export function isId(value: unknown, prefix: IdPrefix): boolean {
  return typeof value === 'string' && value.startsWith(`${prefix}_`) && ID_RE.test(value);
}
