import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../../daemon/paths.js';

// docs/ARCHITECTURE.md, "Storage": domain code talks to repositories; only repositories hold SQL,
// and the composition root builds them. These are the places allowed to do otherwise.
const EXCEPTIONS: ReadonlyArray<{ file: string; why: string }> = [
  { file: 'daemon/container.ts', why: 'the composition root builds every repository once' },
  { file: 'daemon/backup/restore.ts', why: 'restore is its own root: it builds the repositories it checks with' },
  { file: 'daemon/audit/verify.ts', why: 'written before the rule; moves into AuditRepository when next changed' },
];

/** SQL built in place, or a repository built outside the composition root. */
const SQL = /\b(?:selectFrom|insertInto|updateTable|deleteFrom)\(|\bsql`/;
const NEW_REPOSITORY = /\bnew \w+Repository\(/;

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Every `file:line: what` of `text` that breaks the rule (the line as written, trimmed). */
function storageRuleOffences(rel: string, text: string): string[] {
  return text.split('\n').flatMap((line, i) => {
    const what = SQL.test(line)
      ? 'SQL outside a repository'
      : NEW_REPOSITORY.test(line)
        ? 'a repository built outside the root'
        : null;
    return what ? [`${rel}:${i + 1}: ${what}: ${line.trim().slice(0, 100)}`] : [];
  });
}

describe('storage rule (docs/ARCHITECTURE.md, "Storage")', () => {
  const daemon = path.join(PROJECT_ROOT, 'daemon');
  const allowed = new Set(EXCEPTIONS.map((e) => e.file));
  const inScope = (rel: string) => !rel.startsWith('daemon/storage/') && !allowed.has(rel);

  it('no daemon module outside storage/ and the listed exceptions builds SQL or a repository', () => {
    const offences = files(daemon)
      .map((file) => path.relative(PROJECT_ROOT, file).split(path.sep).join('/'))
      .filter(inScope)
      .flatMap((rel) => storageRuleOffences(rel, readFileSync(path.join(PROJECT_ROOT, rel), 'utf8')));
    expect(offences, offences.join('\n')).to.deep.equal([]);
  });

  it('bites: SQL or a repository built in a domain module is named with its file and line', () => {
    const text = [
      "import { sql } from 'kysely';",
      'const rows = await db.selectFrom("users").execute();',
      'await sql`select 1`.execute(db);',
      'const repo = new SessionRepository(database.db);',
      '// a repository passed in is fine: this.sessions = deps.sessions;',
    ].join('\n');
    expect(storageRuleOffences('daemon/sessions/x.ts', text)).to.deep.equal([
      'daemon/sessions/x.ts:2: SQL outside a repository: const rows = await db.selectFrom("users").execute();',
      'daemon/sessions/x.ts:3: SQL outside a repository: await sql`select 1`.execute(db);',
      'daemon/sessions/x.ts:4: a repository built outside the root: const repo = new SessionRepository(database.db);',
    ]);
    for (const call of ['insertInto(', 'updateTable(', 'deleteFrom(']) {
      expect(storageRuleOffences('daemon/a.ts', `await t.${call}'x')`)).to.have.length(1);
    }
  });

  it('every listed exception still exists and still needs to be one', () => {
    for (const { file } of EXCEPTIONS) {
      if (file === 'daemon/container.ts') continue;
      const text = readFileSync(path.join(PROJECT_ROOT, file), 'utf8');
      expect(storageRuleOffences(file, text), `${file} no longer needs its exception: remove it`).to.not.deep.equal([]);
    }
  });

  it('the daemon modules are found (the walk is not vacuous)', () => {
    const all = files(daemon).map((f) => path.relative(PROJECT_ROOT, f).split(path.sep).join('/'));
    expect(all).to.include.members([
      'daemon/sessions/session-service.ts',
      'daemon/auth/auth-service.ts',
      'daemon/storage/repos/users.ts',
    ]);
    expect(all.filter(inScope).length).to.be.greaterThan(50);
  });
});
