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

/** Validates a value against a named schema; throws INVALID_FIELD listing every problem. */
export class Validator {
  constructor(private readonly ajv: Ajv2020) {}

  check<T>(schemaName: string, value: unknown, what = 'request body'): T {
    const fn = this.ajv.getSchema(schemaId(schemaName));
    if (!fn) throw new Error(`unknown schema ${schemaName}`);
    if (!fn(value)) {
      const details = fieldProblems(fn.errors);
      const first = details[0];
      throw new GatewayError('INVALID_FIELD', first ? `${what}: ${first.field} ${first.message}` : `${what} is invalid`, {
        details,
      });
    }
    return value as T;
  }
}

/** API schemas live in schemas/api/<Name>.json with this $id. */
export const schemaId = (name: string): string => `https://keen.invalid/schemas/api/${name}.json`;
