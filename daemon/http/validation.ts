import type { Ajv2020 } from 'ajv/dist/2020.js';
import { GatewayError } from '../errors.js';
import type { ErrorObject } from '../schemas.js';

export interface FieldProblem {
  field: string;
  message: string;
}

/** ajv errors -> `[{field: "options.maxIterations", message: "must be <= 200"}]`. */
export function fieldProblems(errors: ErrorObject[] | null | undefined): FieldProblem[] {
  const out: FieldProblem[] = [];
  for (const e of errors ?? []) {
    const base = e.instancePath.split('/').filter(Boolean).join('.');
    if (e.keyword === 'additionalProperties') {
      const key = (e.params as { additionalProperty: string }).additionalProperty;
      out.push({ field: base ? `${base}.${key}` : key, message: 'unknown field' });
    } else if (e.keyword === 'required') {
      const key = (e.params as { missingProperty: string }).missingProperty;
      out.push({ field: base ? `${base}.${key}` : key, message: 'is required' });
    } else {
      out.push({ field: base || '(body)', message: e.message ?? 'is invalid' });
    }
  }
  const seen = new Set<string>();
  return out.filter((p) => {
    const k = `${p.field}|${p.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** What a string holding U+0000 is told (docs/API.md, INVALID_FIELD). */
export const NUL_MESSAGE = 'must not contain NUL (\\u0000) characters';
/** At most this many fields are named in one answer. */
const MAX_NUL_FIELDS = 20;

/**
 * The fields of `value` (a parsed body, query or route parameters) whose
 * string, or whose member name, holds U+0000, by the dotted name the API uses
 * (`files.0.path`). Postgres text cannot store NUL while SQLite can: every
 * input is refused alike, before it reaches a store. Iterative, so a deeply
 * nested body cannot exhaust the stack.
 */
export function nulFields(value: unknown): string[] {
  const out: string[] = [];
  const stack: Array<[unknown, string]> = [[value, '']];
  while (stack.length > 0 && out.length < MAX_NUL_FIELDS) {
    const [v, at] = stack.pop()!;
    if (typeof v === 'string') {
      if (v.includes('\u0000')) out.push(at || '(body)');
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], at ? `${at}.${i}` : String(i)]);
    } else if (v !== null && typeof v === 'object') {
      const entries = Object.entries(v);
      for (let i = entries.length - 1; i >= 0; i--) {
        const [k, child] = entries[i]!;
        const field = at ? `${at}.${k}` : k;
        // A NUL member name is named where its member is (document order).
        stack.push(k.includes('\u0000') ? ['\u0000', field] : [child, field]);
      }
    }
  }
  return out;
}

/** Throws 400 INVALID_FIELD naming every field of `value` that holds U+0000 (`what`: request body, query, path). */
export function assertNoNul(value: unknown, what: string): void {
  const fields = nulFields(value);
  if (fields.length === 0) return;
  throw new GatewayError('INVALID_FIELD', `${what}: ${fields[0]} ${NUL_MESSAGE}`, {
    details: fields.map((field) => ({ field, message: NUL_MESSAGE })),
  });
}

/** Validates a value against a named schema; throws INVALID_FIELD listing every problem (a NUL anywhere first). */
export class Validator {
  constructor(private readonly ajv: Ajv2020) {}

  check<T>(schemaName: string, value: unknown, what = 'request body'): T {
    const fn = this.ajv.getSchema(schemaId(schemaName));
    if (!fn) throw new Error(`unknown schema ${schemaName}`);
    assertNoNul(value, what);
    if (!fn(value)) {
      const details = fieldProblems(fn.errors);
      const first = details[0];
      throw new GatewayError(
        'INVALID_FIELD',
        first ? `${what}: ${first.field} ${first.message}` : `${what} is invalid`,
        {
          details,
        },
      );
    }
    return value as T;
  }
}

/** API schemas live in schemas/api/<Name>.json with this $id. */
export const schemaId = (name: string): string => `https://keen.invalid/schemas/api/${name}.json`;
