import { expect } from 'chai';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { loadConfig } from '../../daemon/config/load.js';
import { PROJECT_ROOT } from '../../daemon/paths.js';

describe('config.example.yaml', () => {
  const file = path.join(PROJECT_ROOT, 'config.example.yaml');

  it('is valid and equals the built-in defaults', () => {
    const fromFile = loadConfig({ file, env: {} });
    const defaults = loadConfig({ env: {}, cwd: PROJECT_ROOT });
    expect(fromFile).to.deep.equal(defaults);
  });

  it('documents every key of the schema', () => {
    const schema = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'schemas/config.schema.json'), 'utf8'));
    const example = parse(readFileSync(file, 'utf8'));
    const missing: string[] = [];
    const walk = (node: any, value: any, prefix: string) => {
      for (const [k, sub] of Object.entries<any>(node.properties ?? {})) {
        const key = prefix ? `${prefix}.${k}` : k;
        if (!value || !(k in value)) missing.push(key);
        else if (sub.type === 'object' && sub.properties) walk(sub, value[k], key);
      }
    };
    walk(schema, example, '');
    expect(missing).to.deep.equal([]);
  });
});
