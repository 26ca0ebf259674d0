import { expect } from 'chai';
import { credits } from '../../../daemon/credits/money.js';
import { newId } from '../../../daemon/ids.js';
import { LedgerVerifyRepository } from '../../../daemon/storage/repos/ledger-verify.js';
import { describeStorage } from '../../helpers/backends.js';
import { openTestDatabase, type TestDatabase } from '../../helpers/database.js';
import { buildLedger, buildUser, type LedgerFixture } from './helpers.js';

const admin = { type: 'admin' as const, id: 'usr_admin' };
const MIN = 60_000;

/**
 * `credits verify` sums an account with many entries alone, in steps of a few thousand
 * entries (storage/repos/ledger-verify.ts `accountInSteps`), so that one statement never holds
 * a SQLite daemon for long. The steps must reach the verdict of the one-statement page: a
 * tampered account never looks clean, wherever the tampering sits relative to a step's edge.
 */
describeStorage('credits verify in steps (storage/repos/ledger-verify)', (backend) => {
  let tdb: TestDatabase;
  let f: LedgerFixture;
  let users: string[];
  let repo: LedgerVerifyRepository;

  before(async () => {
    tdb = await openTestDatabase(backend);
    repo = new LedgerVerifyRepository(tdb.database.db);
  });
  after(async () => tdb?.close());
  beforeEach(async () => {
    await tdb.database.db.deleteFrom('credit_ledger').execute();
    await tdb.database.db.deleteFrom('credit_reservations').execute();
    await tdb.database.db.deleteFrom('credit_accounts').execute();
    f = buildLedger(tdb.database);
    users = [];
    for (let i = 0; i < 3; i++) {
      const userId = await buildUser(tdb.database);
      // seq 1 grant, 2 reserve, 3 grant, 4 grant, 5 grant.
      await f.ledger.grant({ userId, amount: credits(10), reason: 'x', actor: admin });
      await f.ledger.reserve({ userId, amount: credits(1), ttlMs: MIN, actor: admin });
      for (let k = 0; k < 3; k++) await f.ledger.grant({ userId, amount: credits(2), reason: 'x', actor: admin });
      users.push(userId);
    }
    users.sort();
  });

  /** The verdicts in steps of 1, 2 and 3 entries, and the one-statement page's. */
  async function verdicts(userId: string): Promise<boolean[]> {
    const out: boolean[] = [];
    let pauses = 0;
    for (const step of [1, 2, 3]) {
      out.push((await repo.accountInSteps(userId, step, async () => void pauses++)).clean);
    }
    expect(pauses).to.be.greaterThan(5);
    const page = await repo.accountPage(null, 10);
    out.push(page.find((s) => s.userId === userId)!.clean);
    return out;
  }

  const entryOf = async (userId: string, seq: number) =>
    tdb.database.db
      .selectFrom('credit_ledger')
      .selectAll()
      .where('user_id', '=', userId)
      .where('seq', '=', seq)
      .executeTakeFirstOrThrow();
  const setEntry = async (u: string, seq: number, set: Record<string, number | string>) =>
    tdb.database.db
      .updateTable('credit_ledger')
      .set(set)
      .where('id', '=', (await entryOf(u, seq)).id)
      .execute();

  it('finds every intact account clean, in any step', async () => {
    for (const u of users) expect(await verdicts(u)).to.deep.equal([true, true, true, true]);
  });

  const tamperings: Array<[string, (u: string) => Promise<unknown>]> = [
    [
      'the balance',
      (u) =>
        tdb.database.db
          .updateTable('credit_accounts')
          .set({ balance: credits(17) })
          .where('user_id', '=', u)
          .execute(),
    ],
    [
      'the version',
      (u) => tdb.database.db.updateTable('credit_accounts').set({ version: 4 }).where('user_id', '=', u).execute(),
    ],
    ['an amount at a step edge, balance_after kept', (u) => setEntry(u, 3, { amount: credits(9) })],
    ['a balance_after at a step edge, sums kept', (u) => setEntry(u, 3, { balance_after: credits(11) })],
    ['the last balance_after', (u) => setEntry(u, 5, { balance_after: credits(11) })],
    ['a reserved_after', (u) => setEntry(u, 4, { reserved_after: 0 })],
    ['a seq moved far beyond the version', (u) => setEntry(u, 4, { seq: 1_000_000 })],
    ['a seq moved below the first', (u) => setEntry(u, 1, { seq: -5 })],
    [
      'a deleted middle entry',
      async (u) =>
        tdb.database.db
          .deleteFrom('credit_ledger')
          .where('id', '=', (await entryOf(u, 3)).id)
          .execute(),
    ],
    ['a refund', (u) => setEntry(u, 4, { kind: 'refund' })],
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
    it(`finds the account not clean after tampering with ${what}, in any step`, async () => {
      const victim = users[1]!;
      await tamper(victim);
      expect(await verdicts(victim)).to.deep.equal([false, false, false, false]);
      for (const u of users) if (u !== victim) expect((await verdicts(u))[0]).to.equal(true);
    });
  }

  it('finds the account not clean when it is written between two steps', async () => {
    const victim = users[0]!;
    let writes = 0;
    const summary = await repo.accountInSteps(victim, 2, async () => {
      if (writes++ === 0) await f.ledger.grant({ userId: victim, amount: credits(1), reason: 'x', actor: admin });
    });
    expect(summary.clean).to.equal(false);
    expect((await repo.accountInSteps(victim, 2, async () => undefined)).clean).to.equal(true);
  });

  it('verify() checks an account of more than one step of entries, and names a tampered one', async function () {
    this.timeout(120_000);
    const victim = users[2]!;
    // 12,000 more grants written straight into the table (seq 6 on), the account kept in step.
    const account = await tdb.database.db
      .selectFrom('credit_accounts')
      .selectAll()
      .where('user_id', '=', victim)
      .executeTakeFirstOrThrow();
    let balance = Number(account.balance);
    const reserved = Number(account.reserved);
    const rows = [];
    for (let seq = 6; seq < 12_006; seq++) {
      balance += 1_000;
      rows.push({
        id: newId('txn'),
        user_id: victim,
        tenant_id: account.tenant_id,
        seq,
        kind: 'grant' as const,
        amount: 1_000,
        reserved_delta: 0,
        balance_after: balance,
        reserved_after: reserved,
        reason: 'bulk',
        actor_type: 'system' as const,
        actor_id: null,
        reservation_id: null,
        session_id: null,
        idempotency_key: null,
        created_at: Date.now(),
        pool_entry_id: null,
        api_key_id: null,
      });
    }
    for (let i = 0; i < rows.length; i += 1_000)
      await tdb.database.db
        .insertInto('credit_ledger')
        .values(rows.slice(i, i + 1_000))
        .execute();
    await tdb.database.db
      .updateTable('credit_accounts')
      .set({ balance, version: 12_005 })
      .where('user_id', '=', victim)
      .execute();
    expect(await f.ledger.verify()).to.deep.equal([]);
    await setEntry(victim, 7_777, { balance_after: balance });
    const found = await f.ledger.verify();
    expect(found.map((m) => [m.userId, m.check, m.entryId])).to.deep.include([
      victim,
      'chain',
      (await entryOf(victim, 7_777)).id,
    ]);
    expect([...new Set(found.map((m) => m.userId))]).to.deep.equal([victim]);
  });
});
