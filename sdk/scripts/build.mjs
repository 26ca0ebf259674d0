#!/usr/bin/env node
// Builds sdk/dist from a clean slate: the ES modules (dist/*.js, *.d.ts) and the
// CommonJS build (dist/cjs/*.js, *.d.ts, with a dist/cjs/package.json saying
// "commonjs" so Node and TypeScript read that folder as CommonJS).
// `npm run build`; `npm pack` and `npm publish` run it first (`prepack`).
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const sdk = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const dist = path.join(sdk, 'dist');

let tsc;
try {
  // From sdk/node_modules, else the repository's node_modules above it.
  tsc = createRequire(path.join(sdk, 'package.json')).resolve('typescript/bin/tsc');
} catch {
  console.error('build: TypeScript is not installed; run `npm install` in sdk/ (or `npm ci` at the repository root)');
  process.exit(1);
}

rmSync(dist, { recursive: true, force: true });
for (const project of ['tsconfig.json', 'tsconfig.cjs.json']) {
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(sdk, project)], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`build: tsc -p ${project} failed`);
    process.exit(r.status ?? 1);
  }
}
mkdirSync(path.join(dist, 'cjs'), { recursive: true });
writeFileSync(path.join(dist, 'cjs', 'package.json'), `${JSON.stringify({ type: 'commonjs' }, null, 2)}\n`);
