import { expect } from 'chai';
import { sql } from 'kysely';
import type { CreditLedger } from '../../../daemon/credits/ledger.js';
import { credits, toMicros } from '../../../daemon/credits/money.js';
import { GatewayError } from '../../../daemon/errors.js';
import { newId } from '../../../daemon/ids.js';
import type { Database } from '../../../daemon/storage/database.js';
import { describeStorage } from '../../helpers/backends.js';
import { openTestDatabase, type TestDatabase } from '../../helpers/database.js';
import {
  buildLedger,
  buildUser,
  expectCode,
  expectInvariants,
  openSecondDatabase,
  type LedgerFixture,
} from './helpers.js';

const platform = { type: 'admin' as const, id: 'usr_platform' };
const tenantAdmin = { type: 'admin' as const, id: 'usr_tenant_admin' };

async function buildTenant(database: Database): Promise<string> {
  const id = newId('ten');
  await database.db
    .insertInto('tenants')
    .values({ id, name: `pool-${id}`, created_at: Date.now() })
    .execute();
  return id;
}

/** The data invariants of every pool: balance = sum(entries) >= 0, version = last seq. */
async function expectPoolInvariants(database: Database): Promise<void> {
  for (const p of await database.db.selectFrom('credit_pools').selectAll().execute()) {
    const entries = await database.db
      .selectFrom('credit_pool_ledger')
      .select(['amount', 'seq', 'balance_after'])
      .where('tenant_id', '=', p.tenant_id)
      .orderBy('seq')
      .execute();
    expect(Number(p.balance), `pool of ${p.tenant_id} = sum(entries)`).to.equal(
      entries.reduce((s, e) => s + Number(e.amount), 0),
    );
    expect(Number(p.balance)).to.be.at.least(0);
    expect(entries.every((e) => Number(e.balance_after) >= 0)).to.equal(true);
    expect(Number(p.version)).to.equal(entries.length === 0 ? 0 : Number(entries[entries.length - 1]!.seq));
  }
}

describeStorage('credits/tenant pools (ledger)', (backend) => {
  let tdb: TestDatabase;
  let f: LedgerFixture;

  const poolRows = (tenantId: string) =>
    tdb.database.db
      .selectFrom('credit_pool_ledger')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .orderBy('seq')
      .execute();
  const memberRows = (userId: string) =>
    tdb.database.db.selectFrom('credit_ledger').selectAll().where('user_id', '=', userId).orderBy('seq').execute();

  before(async () => {
    tdb = await openTestDatabase(backend, { poolMax: 20 });
  });
  after(async () => tdb?.close());
  beforeEach(() => {
    f = buildLedger(tdb.database);
  });

  it('platform grants 10 into the pool; a transfer of 4 leaves pool 6 and member 4, in paired, audited entries', async () => {
    const tenantId = await buildTenant(tdb.database);
    const member = await buildUser(tdb.database, { tenantId });
    const g = await f.ledger.grantPool({ tenantId, amount: credits(10), reason: 'allotment', actor: platform });
    expect(g.replayed).to.equal(false);
    expect(g.entry).to.include({ kind: 'grant', amount: credits(10), balanceAfter: credits(10), seq: 1, userId: null });
    expect(g.pool).to.include({ tenantId, balance: credits(10) });

    const t = await f.ledger.transferFromPool({
      tenantId,
      userId: member,
      amount: credits(4),
      reason: 'sprint',
      actor: tenantAdmin,
    });
    expect(t.replayed).to.equal(false);
    expect(t.pool.balance).to.equal(credits(6));
    expect(t.balance).to.deep.equal({ balance: credits(4), reserved: 0, available: credits(4) });
    expect(t.poolEntry).to.include({
      kind: 'transfer',
      amount: -credits(4),
      balanceAfter: credits(6),
      userId: member,
      transferEntryId: t.entry.id,
      seq: 2,
    });
    expect(t.entry).to.include({
      kind: 'grant',
      amount: credits(4),
      poolEntryId: t.poolEntry.id,
      reason: 'sprint',
      userId: member,
    });

    expect((await f.ledger.pool(tenantId))!.balance).to.equal(credits(6));
    expect((await f.ledger.balance(member)).balance).to.equal(credits(4));
    const page = await f.ledger.poolEntries(tenantId);
    expect(page.entries.map((e) => e.kind)).to.deep.equal(['transfer', 'grant']);
    expect(page.nextCursor).to.equal(null);
    const first = await f.ledger.poolEntries(tenantId, { limit: 1 });
    expect(first.entries.map((e) => e.kind)).to.deep.equal(['transfer']);
    expect(
      (await f.ledger.poolEntries(tenantId, { limit: 1, cursor: first.nextCursor })).entries.map((e) => e.kind),
    ).to.deep.equal(['grant']);

    expect(f.audit.actions()).to.deep.equal(['credits.pool_grant', 'credits.pool_transfer']);
    expect(f.audit.events.every((e) => e.withTrx)).to.equal(true);
    expect(f.audit.events[0]).to.deep.include({ tenantId, target: { type: 'tenant', id: tenantId } });
    expect(f.audit.events[1]).to.deep.include({ tenantId, target: { type: 'user', id: member }, actor: tenantAdmin });
    expect(f.audit.events[1]!.details).to.deep.equal({
      amount: 4,
      reason: 'sprint',
      entry_id: t.entry.id,
      pool_entry_id: t.poolEntry.id,
      pool_balance: 6,
    });
    // Credits reach users by the transfer; the pool grant itself is not counted as granted.
    expect(await f.metrics.registry.getSingleMetricAsString('keen_credits_granted_micros_total')).to.match(
      /keen_credits_granted_micros_total 4000000$/,
    );

    await expectInvariants(tdb.database);
    await expectPoolInvariants(tdb.database);
    expect(await f.ledger.verify()).to.deep.equal([]);
  });

  it('a transfer larger than the pool is 402 naming the pool, and writes nothing', async () => {
    const tenantId = await buildTenant(tdb.database);
    const member = await buildUser(tdb.database, { tenantId });
    const fresh = await buildUser(tdb.database, { tenantId });
    await f.ledger.grantPool({ tenantId, amount: credits(10), reason: 'allotment', actor: platform });
    await f.ledger.transferFromPool({
      tenantId,
      userId: member,
      amount: credits(4),
      reason: 'first',
      actor: tenantAdmin,
    });
    const before = { pool: await poolRows(tenantId), member: await memberRows(member), audit: f.audit.events.length };

    const e = await expectCode(
      f.ledger.transferFromPool({
        tenantId,
        userId: member,
        amount: credits(7),
        reason: 'too much',
        actor: tenantAdmin,
      }),
      'INSUFFICIENT_CREDITS',
    );
    expect(e.status).to.equal(402);
    expect(e.message).to.include('pool').and.include(tenantId);
    expect(e.details).to.deep.equal({ pool: tenantId, required: 7, available: 6, shortfall: 1 });
    // A member without an account gets none from a refused transfer.
    await expectCode(
      f.ledger.transferFromPool({
        tenantId,
        userId: fresh,
        amount: credits(7),
        reason: 'too much',
        actor: tenantAdmin,
      }),
      'INSUFFICIENT_CREDITS',
    );

    expect(await poolRows(tenantId)).to.deep.equal(before.pool);
    expect(await memberRows(member)).to.deep.equal(before.member);
    expect(
      await tdb.database.db.selectFrom('credit_accounts').select('user_id').where('user_id', '=', fresh).execute(),
    ).to.deep.equal([]);
    expect(f.audit.events).to.have.length(before.audit);
    expect((await f.ledger.pool(tenantId))!.balance).to.equal(credits(6));
  });

  it('a tenant without a pool row has 0: transfers are 402, reads answer zero; an unknown tenant is undefined / NOT_FOUND', async () => {
    const tenantId = await buildTenant(tdb.database);
    const member = await buildUser(tdb.database, { tenantId });
    const e = await expectCode(
      f.ledger.transferFromPool({
        tenantId,
        userId: member,
        amount: credits(1),
        reason: 'nothing there',
        actor: tenantAdmin,
      }),
      'INSUFFICIENT_CREDITS',
    );
    expect(e.details).to.deep.equal({ pool: tenantId, required: 1, available: 0, shortfall: 1 });
    expect(await f.ledger.pool(tenantId)).to.deep.equal({ tenantId, balance: 0, updatedAt: null });
    expect(await f.ledger.pool(newId('ten'))).to.equal(undefined);
    expect(await f.ledger.pool('not-an-id')).to.equal(undefined);
    await expectCode(
      f.ledger.grantPool({ tenantId: newId('ten'), amount: credits(1), reason: 'ghost', actor: platform }),
      'NOT_FOUND',
    );
    expect(
      await tdb.database.db.selectFrom('credit_pools').select('tenant_id').where('tenant_id', '=', tenantId).execute(),
    ).to.deep.equal([]);
  });

  it("a pool pays only its own tenant's members: another tenant's (or no tenant's) user is NOT_FOUND, nothing written", async () => {
    const tenantA = await buildTenant(tdb.database);
    const tenantB = await buildTenant(tdb.database);
    const inB = await buildUser(tdb.database, { tenantId: tenantB });
    const noTenant = await buildUser(tdb.database, { tenantId: null });
    await f.ledger.grantPool({ tenantId: tenantA, amount: credits(5), reason: 'allotment', actor: platform });
    for (const userId of [inB, noTenant]) {
      await expectCode(
        f.ledger.transferFromPool({
          tenantId: tenantA,
          userId,
          amount: credits(1),
          reason: 'cross',
          actor: tenantAdmin,
        }),
        'NOT_FOUND',
      );
      expect(await memberRows(userId)).to.deep.equal([]);
    }
    expect((await f.ledger.pool(tenantA))!.balance).to.equal(credits(5));
    expect(await poolRows(tenantA)).to.have.length(1);
  });

  it('refuses bad amounts and reasons before touching anything', async () => {
    const tenantId = await buildTenant(tdb.database);
    const member = await buildUser(tdb.database, { tenantId });
    for (const amount of [0, -1, 1.5, Number.NaN]) {
      await expectCode(
        f.ledger.grantPool({ tenantId, amount: amount as never, reason: 'x', actor: platform }),
        'INVALID_FIELD',
      );
      await expectCode(
        f.ledger.transferFromPool({
          tenantId,
          userId: member,
          amount: amount as never,
          reason: 'x',
          actor: tenantAdmin,
        }),
        'INVALID_FIELD',
      );
    }
    await expectCode(
      f.ledger.grantPool({ tenantId, amount: credits(1), reason: '  ', actor: platform }),
      'INVALID_FIELD',
    );
    expect(await poolRows(tenantId)).to.deep.equal([]);
  });

  it('an idempotent pool grant lands once; the key with another amount is IDEMPOTENCY_KEY_REUSED', async () => {
    const tenantId = await buildTenant(tdb.database);
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, () =>
        f.ledger.grantPool({
          tenantId,
          amount: credits(3),
          reason: 'retry',
          actor: platform,
          idempotencyKey: 'pool-grant-1',
        }),
      ),
    );
    const ok = results
      .filter(
        (r): r is PromiseFulfilledResult<Awaited<ReturnType<CreditLedger['grantPool']>>> => r.status === 'fulfilled',
      )
      .map((r) => r.value);
    expect(ok).to.have.length(8);
    expect(ok.filter((r) => !r.replayed)).to.have.length(1);
    expect(new Set(ok.map((r) => r.entry.id)).size).to.equal(1);
    expect(await poolRows(tenantId)).to.have.length(1);
    expect((await f.ledger.pool(tenantId))!.balance).to.equal(credits(3));
    await expectCode(
      f.ledger.grantPool({
        tenantId,
        amount: credits(4),
        reason: 'retry',
        actor: platform,
        idempotencyKey: 'pool-grant-1',
      }),
      'IDEMPOTENCY_KEY_REUSED',
    );
    // The same key on another tenant's pool is another grant.
    const other = await buildTenant(tdb.database);
    expect(
      (
        await f.ledger.grantPool({
          tenantId: other,
          amount: credits(3),
          reason: 'retry',
          actor: platform,
          idempotencyKey: 'pool-grant-1',
        })
      ).replayed,
    ).to.equal(false);
  });

  it('an idempotent transfer lands once, and a retry after the pool ran dry still answers the first', async () => {
    const tenantId = await buildTenant(tdb.database);
    const member = await buildUser(tdb.database, { tenantId });
    const other = await buildUser(tdb.database, { tenantId });
    await f.ledger.grantPool({ tenantId, amount: credits(5), reason: 'allotment', actor: platform });
    const input = {
      tenantId,
      userId: member,
      amount: credits(2),
      reason: 'once',
      actor: tenantAdmin,
      idempotencyKey: 'xfer-1',
    };
    const first = await f.ledger.transferFromPool(input);
    await f.ledger.transferFromPool({
      tenantId,
      userId: other,
      amount: credits(3),
      reason: 'drain',
      actor: tenantAdmin,
    });
    const again = await f.ledger.transferFromPool(input);
    expect(again.replayed).to.equal(true);
    expect(again.entry.id).to.equal(first.entry.id);
    expect(again.poolEntry.id).to.equal(first.poolEntry.id);
    expect(again.pool.balance).to.equal(0);
    expect(await memberRows(member)).to.have.length(1);
    await expectCode(f.ledger.transferFromPool({ ...input, amount: credits(1) }), 'IDEMPOTENCY_KEY_REUSED');
    expect(await f.ledger.verify()).to.deep.equal([]);
  });

  async function raceForTheLastCredits(ledgers: CreditLedger[], tenantId: string, members: string[]): Promise<void> {
    await ledgers[0]!.grantPool({ tenantId, amount: credits(50), reason: 'race', actor: platform });
    const results = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) =>
        ledgers[i % ledgers.length]!.transferFromPool({
          tenantId,
          userId: members[i % members.length]!,
          amount: credits(1),
          reason: 'race',
          actor: tenantAdmin,
        }),
      ),
    );
    const codes: Record<string, number> = {};
    let ok = 0;
    for (const r of results) {
      if (r.status === 'fulfilled') ok += 1;
      else {
        const code =
          r.reason instanceof GatewayError
            ? r.reason.code
            : `unexpected: ${String((r.reason as Error)?.message ?? r.reason)}`;
        codes[code] = (codes[code] ?? 0) + 1;
      }
    }
    expect(codes).to.deep.equal({ INSUFFICIENT_CREDITS: 150 });
    expect(ok).to.equal(50);
    expect((await ledgers[0]!.pool(tenantId))!.balance).to.equal(0);
    let total = 0;
    for (const m of members) total += (await ledgers[0]!.balance(m)).balance;
    expect(total).to.equal(credits(50));
    expect(await poolRows(tenantId)).to.have.length(51);
    await expectInvariants(tdb.database);
    await expectPoolInvariants(tdb.database);
    expect(await ledgers[0]!.verify()).to.deep.equal([]);
  }

  it('200 concurrent 1-credit transfers racing for a 50-credit pool: exactly 50 land, the pool never goes negative', async function () {
    this.timeout(60_000);
    const tenantId = await buildTenant(tdb.database);
    const members = await Promise.all(Array.from({ length: 4 }, () => buildUser(tdb.database, { tenantId })));
    await raceForTheLastCredits([f.ledger], tenantId, members);
  });

  if (backend === 'postgres') {
    it('the same race across two daemons (two pools on one schema)', async function () {
      this.timeout(60_000);
      const second = openSecondDatabase(tdb.home.databaseUrl, 10);
      try {
        const tenantId = await buildTenant(tdb.database);
        const members = await Promise.all(Array.from({ length: 4 }, () => buildUser(tdb.database, { tenantId })));
        await raceForTheLastCredits([f.ledger, buildLedger(second).ledger], tenantId, members);
      } finally {
        await second.close();
      }
    });
  }

  it('transfers and member reservations interleave without deadlocks', async function () {
    this.timeout(60_000);
    const tenantId = await buildTenant(tdb.database);
    const member = await buildUser(tdb.database, { tenantId });
    await f.ledger.grantPool({ tenantId, amount: credits(100), reason: 'allotment', actor: platform });
    await f.ledger.transferFromPool({
      tenantId,
      userId: member,
      amount: credits(30),
      reason: 'seed',
      actor: tenantAdmin,
    });
    const ops = Array.from({ length: 60 }, (_, i) =>
      i % 2 === 0
        ? f.ledger.transferFromPool({
            tenantId,
            userId: member,
            amount: credits(1),
            reason: 'more',
            actor: tenantAdmin,
          })
        : f.ledger.reserve({ userId: member, amount: credits(1), ttlMs: 60_000, actor: { type: 'user', id: member } }),
    );
    const results = await Promise.allSettled(ops);
    expect(
      results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason)),
    ).to.deep.equal([]);
    expect((await f.ledger.pool(tenantId))!.balance).to.equal(credits(40));
    expect(await f.ledger.balance(member)).to.deep.equal({
      balance: credits(60),
      reserved: credits(30),
      available: credits(30),
    });
    expect(await f.ledger.verify()).to.deep.equal([]);
  });

  describe('verify (each test restores what it tampers with)', () => {
    let tenantId: string;
    let member: string;
    let transferId: string;
    let memberEntryId: string;

    before(async () => {
      const l = buildLedger(tdb.database).ledger;
      tenantId = await buildTenant(tdb.database);
      member = await buildUser(tdb.database, { tenantId });
      await l.grantPool({ tenantId, amount: credits(10), reason: 'allotment', actor: platform });
      const t = await l.transferFromPool({
        tenantId,
        userId: member,
        amount: credits(4),
        reason: 'paired',
        actor: tenantAdmin,
      });
      transferId = t.poolEntry.id;
      memberEntryId = t.entry.id;
    });

    const pool = (m: { account?: string; tenantId?: string }) => m.account === 'pool' && m.tenantId === tenantId;

    it('is clean', async () => {
      expect(await f.ledger.verify()).to.deep.equal([]);
    });

    it('detects a tampered pool entry (balance and chain), naming the pool and the entry', async () => {
      await sql`UPDATE credit_pool_ledger SET amount = amount + 1000000 WHERE id = ${transferId}`.execute(
        tdb.database.db,
      );
      try {
        const found = (await f.ledger.verify()).filter(pool);
        expect(found.map((m) => m.check).sort()).to.deep.equal(['balance', 'chain', 'transfer']);
        expect(found.find((m) => m.check === 'balance')).to.deep.include({
          userId: tenantId,
          expected: credits(7),
          actual: credits(6),
        });
        expect(found.find((m) => m.check === 'chain')).to.deep.include({
          entryId: transferId,
          expected: credits(7),
          actual: credits(6),
        });
        expect(found.find((m) => m.check === 'transfer')).to.deep.include({
          entryId: transferId,
          expected: credits(3),
          actual: credits(4),
        });
      } finally {
        await sql`UPDATE credit_pool_ledger SET amount = amount - 1000000 WHERE id = ${transferId}`.execute(
          tdb.database.db,
        );
      }
      expect(await f.ledger.verify()).to.deep.equal([]);
    });

    it('detects a pool balance edited behind the ledger, and a version that skips', async () => {
      await sql`UPDATE credit_pools SET balance = balance + 2000000, version = version + 1 WHERE tenant_id = ${tenantId}`.execute(
        tdb.database.db,
      );
      try {
        const found = (await f.ledger.verify()).filter(pool);
        expect(found.find((m) => m.check === 'balance')).to.deep.include({ expected: credits(6), actual: credits(8) });
        expect(found.find((m) => m.check === 'version')).to.deep.include({ expected: 2, actual: 3 });
      } finally {
        await sql`UPDATE credit_pools SET balance = balance - 2000000, version = version - 1 WHERE tenant_id = ${tenantId}`.execute(
          tdb.database.db,
        );
      }
      expect(await f.ledger.verify()).to.deep.equal([]);
    });

    it("detects a member's grant that no longer matches its pool transfer, and one that names no pool entry", async () => {
      await sql`UPDATE credit_ledger SET pool_entry_id = ${'txn_' + '0'.repeat(26)} WHERE id = ${memberEntryId}`.execute(
        tdb.database.db,
      );
      try {
        const found = await f.ledger.verify();
        expect(found.find((m) => pool(m) && m.check === 'transfer')).to.deep.include({ entryId: transferId });
        expect(found.find((m) => m.userId === member && m.check === 'transfer')).to.deep.include({
          entryId: memberEntryId,
          message: 'grant names a pool entry that does not exist',
        });
      } finally {
        await sql`UPDATE credit_ledger SET pool_entry_id = ${transferId} WHERE id = ${memberEntryId}`.execute(
          tdb.database.db,
        );
      }
      expect(await f.ledger.verify()).to.deep.equal([]);
    });

    it('the database refuses a negative pool and entries of the wrong sign', async () => {
      const refused = async (q: Promise<unknown>) => {
        try {
          await q;
        } catch {
          return true;
        }
        return false;
      };
      expect(
        await refused(sql`UPDATE credit_pools SET balance = -1 WHERE tenant_id = ${tenantId}`.execute(tdb.database.db)),
      ).to.equal(true);
      expect(
        await refused(sql`UPDATE credit_pool_ledger SET amount = 5 WHERE id = ${transferId}`.execute(tdb.database.db)),
      ).to.equal(true);
      expect(await f.ledger.verify()).to.deep.equal([]);
      expect(toMicros((await f.ledger.pool(tenantId))!.balance)).to.equal(credits(6));
    });
  });
});
