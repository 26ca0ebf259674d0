/**
 * Canonical JSON in the style of RFC 8785 (JSON Canonicalization Scheme): object
 * keys sorted by UTF-16 code units, no whitespace, numbers and strings written the
 * way ECMAScript's JSON.stringify writes them (which is what JCS specifies).
 * The same value always gives the same text, so hashes over it are stable across
 * daemons, dialects and a JSON parse/serialize round trip.
 *
 * https://www.rfc-editor.org/rfc/rfc8785
 */
export function canonicalJson(value: unknown): string {
  return write(value, new Set());
}

function write(value: unknown, seen: Set<object>): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('canonical JSON has no representation for NaN or Infinity');
      // JSON.stringify gives ECMAScript's Number::toString, which JCS adopts; -0 becomes 0.
      return JSON.stringify(value);
    case 'object':
      break;
    default:
      throw new TypeError(`canonical JSON cannot represent a ${typeof value}`);
  }
  const obj = value as object;
  if (seen.has(obj)) throw new TypeError('canonical JSON cannot represent a cycle');
  seen.add(obj);
  try {
    if (Array.isArray(obj)) {
      // Like JSON.stringify: holes and undefined elements are written as null.
      return `[${obj.map((v) => (v === undefined ? 'null' : write(v, seen))).join(',')}]`;
    }
    const record = obj as Record<string, unknown>;
    // Default sort compares UTF-16 code units, as RFC 8785 section 3.2.3 requires.
    const keys = Object.keys(record)
      .filter((k) => record[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${write(record[k], seen)}`).join(',')}}`;
  } finally {
    seen.delete(obj);
  }
}
