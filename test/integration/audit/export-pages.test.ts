import { expect } from 'chai';
import type { AuditRecord } from '../../../daemon/audit/entry.js';
import { AuditQuery, AuditQueryError, matchesFilters, type AuditFilters } from '../../../daemon/audit/query.js';
import { EVERYTHING } from '../../../daemon/policies/index.js';
import { AuditRepository } from '../../../daemon/storage/repos/audit.js';
import { describeStorage } from '../../helpers/backends.js';
import { openTestDatabase, type TestDatabase } from '../../helpers/database.js';
import { makeAuditLogger } from './support.js';

const T0 = Date.UTC(2026, 0, 1);
const MIN = 60_000;

/**
 * The export walks the log by seq and filters the time range (it never lets the
 * ts index order the pages): the same entries as the filter says, in seq order,
 * even where times do not follow seq (several daemons, clocks apart).
 */
describeStorage('audit export: a time range in pages, by seq', (backend) => {
  let t: TestDatabase;
  let q: AuditQuery;
  let entries: AuditRecord[];
  before(async () => {
    t = await openTestDatabase(backend);
    q = new AuditQuery({ audits: new AuditRepository(t.database) });
    const { audit, clock } = makeAuditLogger(t.database);
    // 40 entries whose times jump back and forth around T0 + i minutes.
    for (let i = 0; i < 40; i++) {
      clock.set(T0 + i * MIN + (i % 3 === 0 ? -7 * MIN : i % 3 === 1 ? 5 * MIN : 0));
      await audit.record({
        action: i % 2 === 0 ? 'auth.login' : 'key.create',
        outcome: 'success',
        actor: { type: 'user', id: i % 4 === 0 ? 'usr_alice' : 'usr_bob' },
        tenantId: null,
        target: { type: 'user', id: 'usr_alice' },
        details: { i },
      });
    }
    entries = (await q.list(EVERYTHING, {}, { limit: 100, order: 'asc' })).entries;
    expect(entries).to.have.length(40);
  });
  after(async () => t?.close());

  async function exported(filters: AuditFilters, pageSize: number): Promise<number[]> {
    const seqs: number[] = [];
    for await (const line of q.exportJsonLines(EVERYTHING, filters, { pageSize }))
      seqs.push((JSON.parse(line) as AuditRecord).seq);
    return seqs;
  }

  for (const filters of [
    { since: T0 + 10 * MIN, until: T0 + 25 * MIN },
    { since: T0 + 30 * MIN },
    { until: T0 + 3 * MIN },
    { since: T0 + 5 * MIN, until: T0 + 35 * MIN, action: 'auth.*', actorId: 'usr_alice' },
  ] satisfies AuditFilters[]) {
    it(`exports what the filter matches, in seq order: ${JSON.stringify(filters)}`, async () => {
      const expected = entries.filter((e) => matchesFilters(e, EVERYTHING, filters)).map((e) => e.seq);
      expect(expected.length).to.be.greaterThan(0);
      for (const pageSize of [1, 3, 500])
        expect(await exported(filters, pageSize), `page size ${pageSize}`).to.deep.equal(expected);
    });
  }

  it('still refuses times that are not epoch milliseconds', async () => {
    const err = await exported({ since: 1.5 }, 10).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(AuditQueryError);
  });
});
