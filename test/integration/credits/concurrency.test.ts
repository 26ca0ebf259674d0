import { expect } from 'chai';
import { credits, toMicros } from '../../../daemon/credits/money.js';
import type { CreditLedger } from '../../../daemon/credits/ledger.js';
import { GatewayError } from '../../../daemon/errors.js';
import { hashRequest } from '../../../daemon/idempotency/key.js';
import { IdempotencyStore } from '../../../daemon/idempotency/store.js';
import type { Database } from '../../../daemon/storage/database.js';
import { IdempotencyRepository } from '../../../daemon/storage/repos/idempotency.js';
import { describeStorage } from '../../helpers/backends.js';
import { openTestDatabase, type TestDatabase } from '../../helpers/database.js';
import { buildLedger, buildUser, expectInvariants, openSecondDatabase } from './helpers.js';

const admin = { type: 'admin' as const, id: 'usr_admin' };

/** Settled results split into successes and error codes. */
function tally<T>(results: PromiseSettledResult<T>[]): { ok: T[]; codes: Record<string, number> } {
  const ok: T[] = [];
  const codes: Record<string, number> = {};
  for (const r of results) {
    if (r.status === 'fulfilled') ok.push(r.value);
    else {
      const code =
        r.reason instanceof GatewayError
          ? r.reason.code
          : `unexpected: ${String((r.reason as Error)?.message ?? r.reason)}`;
      codes[code] = (codes[code] ?? 0) + 1;
    }
  }
  return { ok, codes };
}

async function raceForFifty(ledgers: CreditLedger[], database: Database, userId: string): Promise<void> {
  await ledgers[0]!.grant({ userId, amount: credits(50), reason: 'race', actor: admin });
  const results = await Promise.allSettled(
    Array.from({ length: 200 }, (_, i) =>
      ledgers[i % ledgers.length]!.reserve({
        userId,
        amount: credits(1),
        ttlMs: 60_000,
        actor: { type: 'user', id: userId },
      }),
    ),
  );
  const { ok, codes } = tally(results);
  expect(codes).to.deep.equal({ INSUFFICIENT_CREDITS: 150 });
  expect(ok).to.have.length(50);
  expect(new Set(ok.map((r) => r.id)).size).to.equal(50);
  expect(await ledgers[0]!.balance(userId)).to.deep.equal({
    balance: credits(50),
    reserved: credits(50),
    available: 0,
  });
  await expectInvariants(database);
  expect(await ledgers[0]!.verify()).to.deep.equal([]);
}

describeStorage('credits/concurrency', (backend) => {
  let tdb: TestDatabase;

  before(async () => {
    tdb = await openTestDatabase(backend, { poolMax: 20 });
  });
  after(async () => tdb?.close());

  it('200 concurrent 1-credit reservations on a 50-credit balance: exactly 50 win', async function () {
    this.timeout(60_000);
    const userId = await buildUser(tdb.database);
    await raceForFifty([buildLedger(tdb.database).ledger], tdb.database, userId);
  });

  if (backend === 'postgres') {
    it('the same race across two daemons (two pools on one schema)', async function () {
      this.timeout(60_000);
      const second = openSecondDatabase(tdb.home.databaseUrl, 10);
      try {
        const userId = await buildUser(tdb.database);
        const a = buildLedger(tdb.database, { instanceId: 'daemon_a' }).ledger;
        const b = buildLedger(second, { instanceId: 'daemon_b' }).ledger;
        await raceForFifty([a, b], tdb.database, userId);
        const owners = await tdb.database.db
          .selectFrom('credit_reservations')
          .select('owner')
          .distinct()
          .where('user_id', '=', userId)
          .execute();
        expect(owners.map((o) => o.owner).sort()).to.deep.equal(['daemon_a', 'daemon_b']);
      } finally {
        await second.close();
      }
    });
  }

  it('first grants racing on a user without an account all land', async () => {
    const userId = await buildUser(tdb.database);
    const { ledger } = buildLedger(tdb.database);
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, () => ledger.grant({ userId, amount: credits(1), reason: 'first', actor: admin })),
    );
    expect(tally(results).codes).to.deep.equal({});
    expect((await ledger.balance(userId)).balance).to.equal(credits(10));
    await expectInvariants(tdb.database);
  });

  it('an idempotent grant retried 10 times concurrently grants once', async () => {
    const userId = await buildUser(tdb.database);
    const { ledger } = buildLedger(tdb.database);
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, () =>
        ledger.grant({ userId, amount: credits(7), reason: 'retry', actor: admin, idempotencyKey: 'grant-retry-1' }),
      ),
    );
    const { ok, codes } = tally(results);
    expect(codes).to.deep.equal({});
    expect(ok.filter((r) => !r.replayed)).to.have.length(1);
    expect(new Set(ok.map((r) => r.entry.id)).size).to.equal(1);
    expect((await ledger.balance(userId)).balance).to.equal(credits(7));
    const grants = await tdb.database.db
      .selectFrom('credit_ledger')
      .select('id')
      .where('user_id', '=', userId)
      .execute();
    expect(grants).to.have.length(1);
  });

  it('an idempotent grant request through the store, retried 10 times concurrently, grants once', async () => {
    const userId = await buildUser(tdb.database);
    const adminId = await buildUser(tdb.database);
    const { ledger, clock } = buildLedger(tdb.database);
    const store = new IdempotencyStore({
      database: tdb.database,
      keys: new IdempotencyRepository(tdb.database),
      clock,
    });
    const body = { user_id: userId, amount: 3, reason: 'store retry' };
    const hash = hashRequest({ method: 'POST', path: '/v1/admin/credits/grant', body });
    const attempt = () =>
      store.run(adminId, 'req-key-1', hash, async (trx) => {
        const r = await ledger.grant(
          { userId, amount: credits(3), reason: body.reason, actor: { type: 'admin', id: adminId } },
          trx,
        );
        return { status: 201, body: { entry_id: r.entry.id } };
      });
    const { ok, codes } = tally(await Promise.allSettled(Array.from({ length: 10 }, attempt)));
    expect(ok.filter((r) => !r.replayed)).to.have.length(1);
    // The retries waited for the first and got its answer: no 409s.
    expect(codes).to.deep.equal({});
    expect((await ledger.balance(userId)).balance).to.equal(credits(3));
    const later = await attempt();
    expect(later.replayed).to.equal(true);
    expect(later.body).to.deep.equal(ok.find((r) => !r.replayed)!.body);
    expect((await ledger.balance(userId)).balance).to.equal(credits(3));
  });

  it('settling one reservation from 10 callers at once charges once', async () => {
    const userId = await buildUser(tdb.database);
    const { ledger } = buildLedger(tdb.database);
    await ledger.grant({ userId, amount: credits(10), reason: 'x', actor: admin });
    const res = await ledger.reserve({
      userId,
      amount: credits(5),
      ttlMs: 60_000,
      actor: { type: 'user', id: userId },
    });
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => (i % 2 ? ledger.settle(res.id, credits(2)) : ledger.release(res.id))),
    );
    const { ok, codes } = tally(results);
    expect(ok).to.have.length(1);
    expect(codes).to.deep.equal({ INVALID_STATE: 9 });
    const expected = ok[0]!.reservation.status === 'settled' ? credits(8) : credits(10);
    expect(await ledger.balance(userId)).to.deep.equal({ balance: expected, reserved: 0, available: expected });
    expect(toMicros(ok[0]!.charged + ok[0]!.released)).to.equal(credits(5));
    await expectInvariants(tdb.database);
  });
});
