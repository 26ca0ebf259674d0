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
  it('no test imports a project module dynamically, nor an ES-module-only script statically', () => {
    // A static import of an .mjs script makes mocha load the whole test file as ESM (the same second copy);
    // such scripts (they import no project module) are imported dynamically instead.
    const offenders = files(path.join(PROJECT_ROOT, 'test')).flatMap((file) => {
      const text = readFileSync(file, 'utf8');
      const rel = path.relative(PROJECT_ROOT, file);
      return [
        ...[...text.matchAll(/import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g)]
          .filter((m) => !m[1]!.endsWith('.mjs'))
          .map((m) => `${rel}: import('${m[1]}')`),
        ...[...text.matchAll(/^import [^;]*from\s+['"](\.{1,2}\/[^'"]+\.mjs)['"]/gm)].map(
          (m) => `${rel}: static import of ${m[1]}`,
        ),
      ];
    });
    expect(offenders).to.deep.equal([]);
  });
});
