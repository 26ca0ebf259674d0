import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../../daemon/paths.js';

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

describe('test hygiene', () => {
  // Mocha loads test files through tsx's CommonJS hook; a dynamic import() of a project
  // module loads a second, ESM copy of it and everything it imports. Two copies break
  // module-level state and corrupt coverage (V8 reports both under one URL).
  it('no test imports a project module dynamically', () => {
    const offenders = files(path.join(PROJECT_ROOT, 'test')).flatMap((file) =>
      [...readFileSync(file, 'utf8').matchAll(/import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g)].map((m) => `${path.relative(PROJECT_ROOT, file)}: import('${m[1]}')`),
    );
    expect(offenders).to.deep.equal([]);
  });
});
