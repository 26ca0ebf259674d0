import { expect } from 'chai';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../../daemon/paths.js';
import { AUDIT_ACTIONS } from '../../daemon/audit/actions.js';
import { SCOPES } from '../../daemon/auth/principal.js';
import { ERROR_CODES } from '../../daemon/errors.js';
import { END_ACTION } from '../../daemon/sessions/supervisor.js';

/**
 * The tables in the docs that list what the code defines must list exactly that:
 * docs/audit.md's actions (AUDIT_ACTIONS, daemon/audit/actions.ts), docs/API.md's
 * error codes (ERROR_CODES, daemon/errors.ts) and its scopes (SCOPES,
 * daemon/auth/principal.ts). test/integration/metrics/catalogue.test.ts does the
 * same for docs/METRICS.md.
 */

const read = (rel: string) => readFileSync(path.join(PROJECT_ROOT, rel), 'utf8');

/** The text of a markdown section, from its heading to the next heading of the same or a higher level. */
function section(md: string, heading: string): string {
  const at = md.indexOf(`\n${heading}\n`);
  if (at < 0) throw new Error(`no section ${heading}`);
  const level = heading.indexOf(' ');
  const rest = md.slice(at + heading.length + 2);
  const next = rest.search(new RegExp(`\\n#{1,${level}} `));
  return next < 0 ? rest : rest.slice(0, next);
}

/** Rows of a markdown table (cells trimmed), header and separator left out. */
function tableRows(text: string, header: string): string[][] {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.startsWith(header));
  if (start < 0) throw new Error(`no table with header ${header}`);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(
      line
        .slice(1, line.endsWith('|') ? -1 : undefined)
        .split('|')
        .map((c) => c.trim()),
    );
  }
  return rows;
}

/** The first `code` span of a cell. */
const codeOf = (cell: string) => /`([^`]+)`/.exec(cell)?.[1] ?? cell;

/** Every daemon/ source file's text but the catalogue's own. */
function daemonSources(): { file: string; text: string }[] {
  const root = path.join(PROJECT_ROOT, 'daemon');
  return (readdirSync(root, { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ts') && f !== path.join('audit', 'actions.ts'))
    .map((f) => ({ file: f, text: readFileSync(path.join(root, f), 'utf8') }));
}

const duplicates = (xs: string[]) => xs.filter((x, i) => xs.indexOf(x) !== i);

describe('docs catalogues against the code', () => {
  describe('docs/audit.md, "Actions"', () => {
    const rows = tableRows(section(read('docs/audit.md'), '## Actions'), '| action |');
    const documented = rows.map((r) => codeOf(r[0]!));

    it('lists every action in AUDIT_ACTIONS, once, and no other', () => {
      expect(duplicates(documented), 'listed twice').to.deep.equal([]);
      expect(
        AUDIT_ACTIONS.filter((a) => !documented.includes(a)),
        'recorded but not documented',
      ).to.deep.equal([]);
      expect(
        documented.filter((a) => !(AUDIT_ACTIONS as readonly string[]).includes(a)),
        'documented but not recorded',
      ).to.deep.equal([]);
    });

    it('marks no action as planned', () => {
      expect(rows.filter((r) => /planned/i.test(r[0]!)).map((r) => r[0])).to.deep.equal([]);
    });

    it('AUDIT_ACTIONS holds every action literal in daemon/ and END_ACTION, and each is recorded somewhere', () => {
      const sources = daemonSources();
      const catalogue = AUDIT_ACTIONS as readonly string[];
      const literals = new Set<string>(Object.values(END_ACTION));
      for (const { text } of sources) {
        for (const m of text.matchAll(/\baction:\s*'([a-z_]+\.[a-z_]+)'/g)) literals.add(m[1]!);
      }
      expect(
        [...literals].filter((a) => !catalogue.includes(a)),
        'recorded but not in AUDIT_ACTIONS',
      ).to.deep.equal([]);
      // An action no code names is a stale catalogue entry (the type alone cannot tell).
      const unused = catalogue.filter((a) => !sources.some(({ text }) => text.includes(`'${a}'`)));
      expect(unused, 'in AUDIT_ACTIONS but recorded nowhere').to.deep.equal([]);
      expect(duplicates([...catalogue]), 'listed twice in AUDIT_ACTIONS').to.deep.equal([]);
    });
  });

  describe('docs/API.md', () => {
    const md = read('docs/API.md');

    it('the error table lists every code of ERROR_CODES with its type and status, and no other', () => {
      const rows = tableRows(section(md, '## Errors'), '| type | code | HTTP |');
      const documented = rows.map((r) => `${codeOf(r[1]!)} ${r[0]} ${r[2]}`);
      const code = Object.entries(ERROR_CODES).map(([c, [type, status]]) => `${c} ${type} ${status}`);
      expect(duplicates(rows.map((r) => codeOf(r[1]!))), 'listed twice').to.deep.equal([]);
      expect(
        code.filter((c) => !documented.includes(c)),
        'in ERROR_CODES, missing or different in the table',
      ).to.deep.equal([]);
      expect(
        documented.filter((c) => !code.includes(c)),
        'in the table, missing or different in ERROR_CODES',
      ).to.deep.equal([]);
    });

    it('the scope table lists SCOPES, in order', () => {
      const rows = tableRows(section(md, '## Conventions'), '| scope |');
      expect(rows.map((r) => codeOf(r[0]!))).to.deep.equal([...SCOPES]);
    });

    it("the members' scopes named in the conventions are SCOPES without admin", () => {
      const m = /a JWT carries its user's scopes \(members:\s+([^;]+);\s+admins also `admin`\)/.exec(
        section(md, '## Conventions'),
      );
      expect(m, "the sentence on a JWT's scopes").to.not.equal(null);
      const members = [...m![1]!.matchAll(/`([^`]+)`/g)].map((x) => x[1]);
      expect(members).to.deep.equal(SCOPES.filter((s) => s !== 'admin'));
    });
  });
});
