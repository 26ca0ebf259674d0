/**
 * Money as integer micro-credits (docs/API.md; 1 credit = 1,000,000
 * micros; no floating-point arithmetic touches a balance). Values come in as
 * JSON numbers or decimal strings and are parsed from their decimal text, never
 * by multiplying a float; they go out as JSON numbers built from the same text.
 */
import { GatewayError } from '../errors.js';

/** An integer number of micro-credits. The brand keeps raw numbers (tokens, ms) from being mixed in. */
export type Micros = number & { readonly __brand: 'Micros' };

export const MICROS_PER_CREDIT = 1_000_000;
/** The largest amount one request may carry: 1e9 credits (1e15 micros, well inside 2^53). */
export const MAX_CREDITS = 1_000_000_000;
export const MAX_MICROS = (MAX_CREDITS * MICROS_PER_CREDIT) as Micros;
export const ZERO = 0 as Micros;

const DECIMAL_RE = /^(\d+)(?:\.(\d+))?$/;

export interface ParseCreditsOptions {
  /** Accept 0 (prices, usage); amounts that move money must be positive. Default false. */
  allowZero?: boolean;
  /** Accept a leading `-` (signed corrections: `adjust`); the magnitude follows the same rules. Default false. */
  allowNegative?: boolean;
}

function refuse(field: string, message: string): GatewayError {
  return new GatewayError('INVALID_FIELD', `${field} ${message}`, { details: [{ field, message }] });
}

/**
 * Parses a credit amount given as a JSON number (`12.5`) or a decimal string
 * (`"12.5"`) into micros. Refuses (400 INVALID_FIELD, details `[{field, message}]`):
 * anything not a number or decimal string, NaN, infinities, exponent forms that
 * are not exact (`1e308`, `1e-7`), negatives unless `allowNegative`, zero unless
 * allowed, more than 6 decimals, more than 1e9 credits (in magnitude).
 */
export function parseCredits(value: unknown, field: string, options: ParseCreditsOptions = {}): Micros {
  let text: string;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw refuse(field, 'must be a finite number');
    // String(n) is the shortest decimal that round-trips to n: the text the client most likely sent.
    text = String(value);
  } else if (typeof value === 'string') {
    text = value.trim();
    if (text.length === 0 || text.length > 40) throw refuse(field, 'must be a decimal number of credits');
  } else {
    throw refuse(field, 'must be a number of credits');
  }

  let sign = 1;
  if (text.startsWith('-')) {
    if (!options.allowNegative) throw refuse(field, 'must be positive');
    sign = -1;
    text = text.slice(1);
  } else if (text.startsWith('+')) text = text.slice(1);
  if (/e/i.test(text)) text = expandExponent(text, field);

  const match = DECIMAL_RE.exec(text);
  if (!match) throw refuse(field, 'must be a decimal number of credits');
  const intDigits = match[1]!.replace(/^0+(?=\d)/, '');
  const fracDigits = (match[2] ?? '').replace(/0+$/, '');
  if (fracDigits.length > 6) throw refuse(field, 'must have at most 6 decimal places');
  if (intDigits.length > String(MAX_CREDITS).length) throw refuse(field, `must be at most ${MAX_CREDITS} credits`);

  // Both parts are small integers here (< 1e11 and < 1e6): exact in a double.
  const micros = Number(intDigits) * MICROS_PER_CREDIT + Number(fracDigits.padEnd(6, '0'));
  if (micros > MAX_MICROS) throw refuse(field, `must be at most ${MAX_CREDITS} credits`);
  if (micros === 0 && !options.allowZero)
    throw refuse(field, options.allowNegative ? 'must not be zero' : 'must be positive');
  return (micros === 0 ? 0 : sign * micros) as Micros;
}

/**
 * Rewrites `1.5e3` as `1500` by moving the decimal point in the text. Anything
 * that would need more than 6 decimals or exceed the maximum is refused here,
 * before a huge exponent can build a huge string.
 */
function expandExponent(text: string, field: string): string {
  const m = /^(\d+)(?:\.(\d*))?e([+-]?\d+)$/i.exec(text);
  if (!m) throw refuse(field, 'must be a decimal number of credits');
  const exp = Number(m[3]);
  if (!Number.isSafeInteger(exp) || Math.abs(exp) > 30) {
    throw refuse(field, exp > 0 ? `must be at most ${MAX_CREDITS} credits` : 'must have at most 6 decimal places');
  }
  let all = m[1]! + (m[2] ?? '');
  let point = m[1]!.length + exp;
  if (point <= 0) {
    all = '0'.repeat(1 - point) + all;
    point = 1;
  } else if (point > all.length) {
    all = all.padEnd(point, '0');
  }
  const intPart = all.slice(0, point);
  const frac = all.slice(point);
  return frac.length > 0 ? `${intPart}.${frac}` : intPart;
}

/**
 * Micros as a JSON number of credits (`12_500_000` -> `12.5`). Built from the
 * decimal text, so the number serializes back to exactly that text for every
 * amount up to 1e9 credits with 6 decimals. Accepts signed values (ledger entries).
 */
export function formatCredits(m: Micros | number): number {
  assertMicros(m, 'amount');
  const sign = m < 0 ? '-' : '';
  const abs = Math.abs(m);
  const intPart = Math.floor(abs / MICROS_PER_CREDIT);
  const frac = abs - intPart * MICROS_PER_CREDIT;
  const fracText = String(frac).padStart(6, '0').replace(/0+$/, '');
  return Number(`${sign}${intPart}${fracText ? `.${fracText}` : ''}`);
}

/** Asserts an integer micro amount (a stored column, a computed sum) and brands it. */
export function toMicros(n: number, what = 'amount'): Micros {
  assertMicros(n, what);
  return n as Micros;
}

function assertMicros(n: number, what: string): asserts n is Micros {
  if (!Number.isSafeInteger(n)) throw new RangeError(`${what} is not a safe integer number of micros: ${n}`);
}

/** a + b, refusing to leave the safe integer range. */
export function addMicros(a: Micros, b: Micros): Micros {
  return toMicros(a + b, 'sum');
}

/** a - b, refusing to leave the safe integer range. */
export function subMicros(a: Micros, b: Micros): Micros {
  return toMicros(a - b, 'difference');
}

export function minMicros(a: Micros, b: Micros): Micros {
  return (a < b ? a : b) as Micros;
}

export function maxMicros(a: Micros, b: Micros): Micros {
  return (a > b ? a : b) as Micros;
}

export function negMicros(a: Micros): Micros {
  return (a === 0 ? 0 : -a) as Micros;
}

/** Whole credits as micros, for tests and defaults (`credits(50)`); integers only. */
export function credits(whole: number): Micros {
  if (!Number.isSafeInteger(whole))
    throw new RangeError('credits() takes whole credits; use parseCredits for decimals');
  return toMicros(whole * MICROS_PER_CREDIT);
}
