import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../../daemon/paths.js';

// The layer rules live in biome.json (`noRestrictedImports` per folder). These tests lint deliberately
// violating snippets with the repository's own biome.json, in a scratch copy of the layout, and expect
// the rule to bite; and lint the allowed imports, and expect silence. `npm run lint` runs the same
// rules over the tree.

// A dynamic import in a snippet is spelled with Q, so that test-hygiene.test.ts's grep does not take it for one.
const Q = "'";
const BIOME = path.join(PROJECT_ROOT, 'node_modules', '@biomejs', 'biome', 'bin', 'biome');

interface Diagnostic {
  category: string;
  message: string;
  location: { path: string; start: { line: number } };
}

function lint(files: Record<string, string>): Diagnostic[] {
  const dir = mkdtempSync(path.join(tmpdir(), 'keen-lint-'));
  try {
    const config = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'biome.json'), 'utf8')) as Record<string, unknown>;
    delete config.$schema;
    writeFileSync(path.join(dir, 'biome.json'), JSON.stringify(config));
    for (const [rel, text] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
      writeFileSync(path.join(dir, rel), text);
    }
    let out: string;
    try {
      out = execFileSync(
        process.execPath,
        [BIOME, 'lint', '--vcs-enabled=false', '--reporter=json', '--max-diagnostics=none', '.'],
        { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
      );
    } catch (err) {
      out = (err as { stdout: string }).stdout;
    }
    const report = JSON.parse(out) as { diagnostics: Diagnostic[] };
    return report.diagnostics.filter((d) => d.category.startsWith('lint/'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function restricted(diagnostics: Diagnostic[]): string[] {
  return diagnostics
    .filter((d) => d.category === 'lint/style/noRestrictedImports')
    .map((d) => `${d.location.path}:${d.location.start.line}`)
    .sort();
}

describe('lint: layer rules in biome.json', function () {
  this.timeout(60_000);

  it('domain code never imports koa, @koa/router, koa-body or the HTTP edge, statically or dynamically', () => {
    const found = lint({
      'daemon/credits/bad.ts': [
        "import type { Context } from 'koa';",
        "import Router from '@koa/router';",
        "import { koaBody } from 'koa-body';",
        "import { answerOnce } from '../http/answer-once.js';",
        'export async function f(c: Context) {',
        `  const m = await import(${Q}../http/middleware/errors.js${Q});`,
        '  return [Router, koaBody, answerOnce, m, c];',
        '}',
        '',
      ].join('\n'),
      'daemon/periodic.ts': "import Koa from 'koa';\nexport const k = Koa;\n",
    });
    expect(restricted(found)).to.deep.equal([
      'daemon/credits/bad.ts:1',
      'daemon/credits/bad.ts:2',
      'daemon/credits/bad.ts:3',
      'daemon/credits/bad.ts:4',
      'daemon/credits/bad.ts:6',
      'daemon/periodic.ts:1',
    ]);
  });

  it('routes never import daemon/storage, not even a type', () => {
    const found = lint({
      'daemon/http/routes/bad.ts': [
        "import type { Database } from '../../storage/database.js';",
        "import { migrateToLatest } from '../../storage/migrator.js';",
        'export const r = (d: Database) => [d, migrateToLatest];',
        '',
      ].join('\n'),
    });
    expect(restricted(found)).to.deep.equal(['daemon/http/routes/bad.ts:1', 'daemon/http/routes/bad.ts:2']);
  });

  it('keen-admin imports from daemon/ only cli-shared.js; init, doctor and backup also operator.js', () => {
    const shared = "import { formatCredits, loadConfig, isId } from '../../daemon/cli-shared.js';\n";
    const operator = "import { databaseFromConfig } from '../../daemon/operator.js';\n";
    const found = lint({
      'cli/commands/credits.ts': [
        "import { CreditLedger } from '../../daemon/credits/ledger.js';",
        "import { formatCredits } from '../../daemon/credits/money.js';",
        "import { loadConfig } from '../../daemon/config/load.js';",
        "import { VERSION } from '../../daemon/version.js';",
        "import type { Database } from '../../daemon/storage/database.js';",
        "export { isId } from '../../daemon/ids.js';",
        "import { SCOPES } from '../../daemon/cli-shared.js';",
        'export const c = [CreditLedger, formatCredits, loadConfig, VERSION, SCOPES, (d: Database) => d];',
        '',
      ].join('\n'),
      'cli/core/context.ts': `export const s = import(${Q}../../daemon/auth/passwords.js${Q});\n`,
      'cli/program.ts': "import { VERSION } from '../daemon/version.js';\nexport const v = VERSION;\n",
      'cli/commands/users.ts': `${operator}export const u = databaseFromConfig;\n`,
      'cli/commands/tenants.ts': `${shared}export const t = [formatCredits, loadConfig, isId];\n`,
      'cli/commands/init.ts': `${shared}${operator}export const i = [formatCredits, loadConfig, isId, databaseFromConfig];\n`,
      'cli/commands/doctor.ts': `${shared}${operator}export const d = [formatCredits, loadConfig, isId, databaseFromConfig];\n`,
      'cli/commands/backup.ts': [
        "import { createBackup } from '../../daemon/operator.js';",
        "import { createBackup as direct } from '../../daemon/backup/snapshot.js';",
        "import { CreditLedger } from '../../daemon/credits/ledger.js';",
        'export const b = [createBackup, direct, CreditLedger];',
        '',
      ].join('\n'),
    });
    expect(restricted(found)).to.deep.equal([
      'cli/commands/backup.ts:2',
      'cli/commands/backup.ts:3',
      'cli/commands/credits.ts:1',
      'cli/commands/credits.ts:2',
      'cli/commands/credits.ts:3',
      'cli/commands/credits.ts:4',
      'cli/commands/credits.ts:5',
      'cli/commands/credits.ts:6',
      'cli/commands/users.ts:1',
      'cli/core/context.ts:1',
      'cli/program.ts:1',
    ]);
  });

  it('daemon/operator.ts is domain code: only its marked presenter re-export reaches daemon/http', () => {
    const operator = readFileSync(path.join(PROJECT_ROOT, 'daemon', 'operator.ts'), 'utf8');
    const found = lint({
      'daemon/operator.ts': operator,
      'daemon/cli-shared.ts': "export { answerOnce } from './http/answer-once.js';\n",
    });
    expect(restricted(found)).to.deep.equal(['daemon/cli-shared.ts:1']);
    const unmarked = operator.replace(/^\/\/ biome-ignore lint\/style\/noRestrictedImports:.*\n/m, '');
    expect(unmarked).to.not.equal(operator);
    expect(restricted(lint({ 'daemon/operator.ts': unmarked })).length).to.equal(1);
  });

  it('a focused test (.only) under test/ fails the lint; a function named fit elsewhere does not', () => {
    const found = lint({
      'test/unit/focused.test.ts': "describe('a', () => {\n  it.only('b', () => {});\n});\n",
      'cli/core/fit.ts': 'const fit = (s: string) => s.slice(0, 80);\nexport const f = fit(String(1));\n',
    });
    const focused = found.filter((d) => d.category === 'lint/suspicious/noFocusedTests');
    expect(focused.map((d) => `${d.location.path}:${d.location.start.line}`)).to.deep.equal([
      'test/unit/focused.test.ts:2',
    ]);
  });

  it('the edge and the composition root may import Koa and storage', () => {
    const edge =
      "import Koa from 'koa';\nimport { Database } from '../storage/database.js';\nexport const e = [Koa, Database];\n";
    const found = lint({
      'daemon/http/server-bits.ts': edge,
      'daemon/ws/upgrade.ts': edge,
      'daemon/container.ts':
        "import Koa from 'koa';\nimport { r } from './http/routes.js';\nexport const c = [Koa, r];\n",
      'daemon/credits/fine.ts':
        "import http from 'node:http';\nimport { Database } from '../storage/database.js';\n" +
        'export const f = [http, Database];\n',
    });
    expect(restricted(found)).to.deep.equal([]);
  });
});
