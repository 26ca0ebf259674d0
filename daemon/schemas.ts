import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { SCHEMAS_DIR } from './paths.js';

// ajv-formats ships CommonJS with a default export object.
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;

/** Every schema file under schemas/ (config and API shapes), sorted for stable output. */
export function listSchemaFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.name.endsWith('.json')) out.push(p);
    }
  };
  walk(SCHEMAS_DIR);
  return out.sort();
}

export interface SchemaDoc {
  $id: string;
  title?: string;
  [key: string]: unknown;
}

/** Loads the schema files once; `byName` finds a schema by its file name without `.json`. */
export function loadSchemas(): Map<string, SchemaDoc> {
  const map = new Map<string, SchemaDoc>();
  for (const file of listSchemaFiles()) {
    const doc = JSON.parse(readFileSync(file, 'utf8')) as SchemaDoc;
    map.set(path.basename(file, '.json'), doc);
  }
  return map;
}

/** An ajv instance with every schema registered: the single source of validation. */
export function createAjv(options: { useDefaults?: boolean; coerceTypes?: boolean } = {}): Ajv2020 {
  const ajv = new Ajv2020({
    allErrors: true,
    strict: true,
    allowUnionTypes: true,
    useDefaults: options.useDefaults ?? false,
    coerceTypes: options.coerceTypes ?? false,
  });
  addFormats(ajv);
  ajv.addKeyword({ keyword: 'x-secret' });
  for (const doc of loadSchemas().values()) ajv.addSchema(doc);
  return ajv;
}

export type { ErrorObject, ValidateFunction };

/** `/server/port` + `must be integer` -> `server.port: must be integer`; unknown keys name themselves. */
export function describeAjvErrors(errors: ErrorObject[] | null | undefined, root = ''): string[] {
  if (!errors) return [];
  const out: string[] = [];
  for (const e of errors) {
    const base = (root + e.instancePath).split('/').filter(Boolean).join('.');
    if (e.keyword === 'additionalProperties') {
      const key = (e.params as { additionalProperty: string }).additionalProperty;
      out.push(`${base ? `${base}.` : ''}${key}: unknown key`);
    } else if (e.keyword === 'required') {
      const key = (e.params as { missingProperty: string }).missingProperty;
      out.push(`${base ? `${base}.` : ''}${key}: is required`);
    } else if (e.keyword === 'enum') {
      const allowed = (e.params as { allowedValues: unknown[] }).allowedValues.map(String).join(', ');
      out.push(`${base || '(root)'}: must be one of ${allowed}`);
    } else {
      out.push(`${base || '(root)'}: ${e.message ?? 'is invalid'}`);
    }
  }
  return [...new Set(out)];
}
