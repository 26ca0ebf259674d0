import { expect } from 'chai';
import type { AuditRecord } from '../../../daemon/audit/entry.js';
import { AuditQuery, matchesFilters, type AuditFilters } from '../../../daemon/audit/query.js';
import { EVERYTHING, type Reach } from '../../../daemon/policies/index.js';
import { AuditRepository } from '../../../daemon/storage/repos/audit.js';
import { describeStorage } from '../../helpers/backends.js';
import { openTestDatabase, type TestDatabase } from '../../helpers/database.js';
import { makeAuditLogger } from './support.js';

const T0 = Date.UTC(2026, 0, 1);
const MIN = 60_000;

/**
 * Filtered pages with an actor and a time window: the repository first turns the window into
 * the seq range of the actor's entries in it. The pages must hold exactly what the filter
 * says, in seq order, both ways and whatever the page size, even where times do not follow
 * seq (several daemons, clocks apart), as the plain filtered walk answered before.
 */
describeStorage('audit list: an actor with a time window, in pages', (backend) => {
  let t: TestDatabase;
  let q: AuditQuery;
  let entries: AuditRecord[];
  before(async () => {
    t = await openTestDatabase(backend);
    q = new AuditQuery({ audits: new AuditRepository(t.database) });
    const { audit, clock } = makeAuditLogger(t.database);
    // 60 entries whose times jump back and forth around T0 + i minutes; the window's first and
    // last entries by seq are out of time order with their neighbours.
    for (let i = 0; i < 60; i++) {
      clock.set(T0 + i * MIN + (i % 3 === 0 ? -7 * MIN : i % 3 === 1 ? 5 * MIN : 0));
      await audit.record({
        action: i % 2 === 0 ? 'auth.login' : 'key.create',
        outcome: i % 5 === 0 ? 'failure' : 'success',
        actor: { type: 'user', id: i % 4 === 0 ? 'usr_alice' : 'usr_bob' },
        tenantId: i % 3 === 0 ? 'ten_a' : null,
        target: { type: 'user', id: i % 7 === 0 ? 'usr_bob' : 'usr_alice' },
        details: { i },
      });
    }
    entries = (await q.list(EVERYTHING, {}, { limit: 100, order: 'asc' })).entries;
    expect(entries).to.have.length(60);
  });
  after(async () => t?.close());

  async function paged(reach: Reach, filters: AuditFilters, limit: number, order: 'asc' | 'desc'): Promise<number[]> {
    const seqs: number[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 200; pages++) {
      const page = await q.list(reach, filters, { cursor, limit, order });
      seqs.push(...page.entries.map((e) => e.seq));
      if (!page.nextCursor) return seqs;
      cursor = page.nextCursor;
    }
    throw new Error('too many pages');
  }

  const cases: Array<{ reach: Reach; filters: AuditFilters }> = [
    { reach: EVERYTHING, filters: { actorId: 'usr_bob', since: T0 + 10 * MIN, until: T0 + 25 * MIN } },
    { reach: EVERYTHING, filters: { actorId: 'usr_alice', since: T0 + 5 * MIN, until: T0 + 50 * MIN } },
    {
      reach: EVERYTHING,
      filters: { actorId: 'usr_bob', since: T0 + 20 * MIN, until: T0 + 40 * MIN, action: 'auth.*' },
    },
    { reach: EVERYTHING, filters: { actorId: 'usr_bob', since: T0, until: T0 + 70 * MIN, action: 'key.create' } },
    {
      reach: EVERYTHING,
      filters: { actorId: 'usr_alice', since: T0 + 2 * MIN, until: T0 + 30 * MIN, outcome: 'success' },
    },
    {
      reach: EVERYTHING,
      filters: { actorId: 'usr_bob', since: T0 + 3 * MIN, until: T0 + 45 * MIN, tenantId: 'ten_a' },
    },
    { reach: { tenantId: 'ten_a' }, filters: { actorId: 'usr_bob', since: T0, until: T0 + 40 * MIN } },
    { reach: EVERYTHING, filters: { actorId: 'usr_bob', since: T0 + 30 * MIN, until: T0 + 30 * MIN + 1 } },
    // Open at one end: a window with only an end is turned into a range too; one with only a start is not.
    { reach: EVERYTHING, filters: { actorId: 'usr_bob', until: T0 + 25 * MIN } },
    { reach: EVERYTHING, filters: { actorId: 'usr_alice', until: T0 + 30 * MIN, action: 'auth.*' } },
    { reach: { userId: 'usr_alice' }, filters: { actorId: 'usr_bob', until: T0 + 40 * MIN } },
    { reach: EVERYTHING, filters: { actorId: 'usr_bob', since: T0 + 40 * MIN } },
  ];
  for (const { reach, filters } of cases) {
    it(`pages what the filter matches, in seq order: ${JSON.stringify({ reach, filters })}`, async () => {
      const expected = entries.filter((e) => matchesFilters(e, reach, filters)).map((e) => e.seq);
      for (const limit of [1, 3, 500]) {
        expect(await paged(reach, filters, limit, 'asc'), `asc, limit ${limit}`).to.deep.equal(expected);
        expect(await paged(reach, filters, limit, 'desc'), `desc, limit ${limit}`).to.deep.equal(
          [...expected].reverse(),
        );
      }
    });
  }

  it('holds entries at both ends of the window out of time order', async () => {
    const filters = { actorId: 'usr_bob', since: T0 + 10 * MIN, until: T0 + 25 * MIN };
    const inWindow = entries.filter((e) => matchesFilters(e, EVERYTHING, filters));
    // Some entry with a lower seq than the window's first is later than it: times are not in seq order.
    const first = inWindow[0]!;
    expect(entries.some((e) => e.seq > first.seq && e.ts < first.ts)).to.equal(true);
    expect(inWindow.length).to.be.greaterThan(4);
  });

  it('answers an empty page when the actor has no entry in the window', async () => {
    const page = await q.list(EVERYTHING, { actorId: 'usr_bob', since: T0 + 500 * MIN, until: T0 + 600 * MIN });
    expect(page).to.deep.equal({ entries: [], nextCursor: null });
    const none = await q.list(EVERYTHING, { actorId: 'usr_nobody', since: T0, until: T0 + 600 * MIN });
    expect(none.entries).to.deep.equal([]);
  });
});
