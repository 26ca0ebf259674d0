import { expect } from 'chai';
import { credits } from '../../../daemon/credits/money.js';
import { LedgerVerifyRepository } from '../../../daemon/storage/repos/ledger-verify.js';
import { describeStorage } from '../../helpers/backends.js';
import { openTestDatabase, type TestDatabase } from '../../helpers/database.js';
import { buildLedger, buildUser, type LedgerFixture } from './helpers.js';

const admin = { type: 'admin' as const, id: 'usr_admin' };
const MIN = 60_000;

/**
 * `credits verify` sums the ledger a page of accounts at a time in SQL and checks
 * entry by entry only the accounts whose sums disagree: a tampered account must
 * never look clean, whatever was changed, and every account is seen once.
 */
describeStorage('credits verify in pages (storage/repos/ledger-verify)', (backend) => {
  let tdb: TestDatabase;
  let f: LedgerFixture;
  let users: string[];

  before(async () => {
    tdb = await openTestDatabase(backend);
  });
  after(async () => tdb?.close());
  beforeEach(async () => {
    await tdb.database.db.deleteFrom('credit_ledger').execute();
    await tdb.database.db.deleteFrom('credit_reservations').execute();
    await tdb.database.db.deleteFrom('credit_accounts').execute();
    f = buildLedger(tdb.database);
    users = [];
    for (let i = 0; i < 5; i++) {
      const userId = await buildUser(tdb.database);
      await f.ledger.grant({ userId, amount: credits(10), reason: 'x', actor: admin });
      await f.ledger.reserve({ userId, amount: credits(1), ttlMs: MIN, actor: admin });
      await f.ledger.grant({ userId, amount: credits(2), reason: 'x', actor: admin });
      users.push(userId);
    }
    users.sort();
  });
  afterEach(async () => {
    await f.ledger.reapExpired(Number.MAX_SAFE_INTEGER);
  });

  async function summaries(limit: number) {
    const repo = new LedgerVerifyRepository(tdb.database.db);
    const seen: Array<{ userId: string; clean: boolean }> = [];
    for (let after: string | null = null; ; ) {
      const page = await repo.accountPage(after, limit);
      if (page.length === 0) return seen;
      seen.push(...page);
      after = page[page.length - 1]!.userId;
    }
  }

  const dirty = async (limit = 2) => (await summaries(limit)).filter((s) => !s.clean).map((s) => s.userId);

  it('sees every account once across pages, all clean on an intact ledger', async () => {
    const seen = await summaries(2);
    expect(seen.map((s) => s.userId)).to.deep.equal(users);
    expect(seen.every((s) => s.clean)).to.equal(true);
    expect(await f.ledger.verify()).to.deep.equal([]);
  });

  const entryOf = async (userId: string, seq: number) =>
    tdb.database.db
      .selectFrom('credit_ledger')
      .selectAll()
      .where('user_id', '=', userId)
      .where('seq', '=', seq)
      .executeTakeFirstOrThrow();

  const tamperings: Array<[string, (userId: string) => Promise<unknown>]> = [
    [
      'the balance',
      (u) =>
        tdb.database.db
          .updateTable('credit_accounts')
          .set({ balance: credits(13) })
          .where('user_id', '=', u)
          .execute(),
    ],
    [
      'the version',
      (u) => tdb.database.db.updateTable('credit_accounts').set({ version: 4 }).where('user_id', '=', u).execute(),
    ],
    [
      'an amount, balance_after kept',
      async (u) =>
        tdb.database.db
          .updateTable('credit_ledger')
          .set({ amount: credits(9) })
          .where('id', '=', (await entryOf(u, 1)).id)
          .execute(),
    ],
    [
      'a balance_after, sums kept',
      async (u) =>
        tdb.database.db
          .updateTable('credit_ledger')
          .set({ balance_after: credits(11) })
          .where('id', '=', (await entryOf(u, 1)).id)
          .execute(),
    ],
    [
      'a reserved_after',
      async (u) =>
        tdb.database.db
          .updateTable('credit_ledger')
          .set({ reserved_after: 0 })
          .where('id', '=', (await entryOf(u, 3)).id)
          .execute(),
    ],
    [
      'a seq (gap)',
      async (u) =>
        tdb.database.db
          .updateTable('credit_ledger')
          .set({ seq: 7 })
          .where('id', '=', (await entryOf(u, 3)).id)
          .execute(),
    ],
    [
      'a deleted first entry',
      async (u) =>
        tdb.database.db
          .deleteFrom('credit_ledger')
          .where('id', '=', (await entryOf(u, 1)).id)
          .execute(),
    ],
    [
      'a reservation released behind the ledger',
      (u) =>
        tdb.database.db
          .updateTable('credit_reservations')
          .set({ status: 'released' })
          .where('user_id', '=', u)
          .execute(),
    ],
  ];

  for (const [what, tamper] of tamperings) {
    it(`flags the account after tampering with ${what}, and verify() reports it`, async () => {
      const victim = users[2]!;
      await tamper(victim);
      expect(await dirty()).to.deep.equal([victim]);
      const found = await f.ledger.verify();
      expect(found.length).to.be.greaterThan(0);
      expect([...new Set(found.map((m) => m.userId))]).to.deep.equal([victim]);
    });
  }

  it('leaves an account with refunds to the entry-by-entry check', async () => {
    const victim = users[1]!;
    const e = await entryOf(victim, 3);
    await tdb.database.db.updateTable('credit_ledger').set({ kind: 'refund' }).where('id', '=', e.id).execute();
    expect(await dirty(10)).to.deep.equal([victim]);
    // A refund of a session that charged nothing: the per-account check names it.
    expect((await f.ledger.verify()).map((m) => [m.userId, m.check])).to.deep.equal([[victim, 'refund']]);
  });
});
