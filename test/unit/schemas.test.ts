import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { generateTypes, TYPES_FILE } from '../../scripts/gen-types.js';
import { createAjv, listSchemaFiles } from '../../daemon/schemas.js';

describe('schemas/', () => {
  it('every schema compiles under ajv strict mode', () => {
    const ajv = createAjv();
    for (const file of listSchemaFiles()) {
      const doc = JSON.parse(readFileSync(file, 'utf8')) as { $id: string };
      expect(ajv.getSchema(doc.$id), file).to.be.a('function');
    }
  });

  it('schemas/types.gen.ts is generated from the current schemas (run `npm run gen:types`)', async function () {
    this.timeout(60_000);
    expect(readFileSync(TYPES_FILE, 'utf8')).to.equal(await generateTypes());
  });
});
