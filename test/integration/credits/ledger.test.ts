import { expect } from 'chai';
import { sql } from 'kysely';
import { credits, toMicros, type Micros } from '../../../daemon/credits/money.js';
import { presentBalance, presentEntry } from '../../../daemon/credits/present.js';
import { newId } from '../../../daemon/ids.js';
import { EVERYTHING } from '../../../daemon/policies/index.js';
import { describeStorage } from '../../helpers/backends.js';
import { openTestDatabase, type TestDatabase } from '../../helpers/database.js';
import { buildLedger, buildUser, expectCode, expectInvariants, type LedgerFixture } from './helpers.js';

const admin = { type: 'admin' as const, id: 'usr_admin' };
const userActor = (id: string) => ({ type: 'user' as const, id });
const MIN = 60_000;

describeStorage('credits/ledger', (backend) => {
  let tdb: TestDatabase;
  let f: LedgerFixture;
  let userId: string;

  before(async () => {
    tdb = await openTestDatabase(backend);
  });
  after(async () => tdb?.close());
  beforeEach(async () => {
    f = buildLedger(tdb.database);
    userId = await buildUser(tdb.database);
  });
  afterEach(async () => {
    // Leave no open lease behind: the next test's reaper counts only its own.
    await f.ledger.reapExpired(Number.MAX_SAFE_INTEGER);
    await expectInvariants(tdb.database);
    expect(await f.ledger.verify()).to.deep.equal([]);
  });

  describe('grant and balance', () => {
    it('starts at zero, creates the account on the first grant, audits it in the transaction', async () => {
      expect(await f.ledger.balance(userId)).to.deep.equal({ balance: 0, reserved: 0, available: 0 });
      const r = await f.ledger.grant({ userId, amount: credits(50), reason: 'welcome', actor: admin });
      expect(r.replayed).to.equal(false);
      expect(r.entry).to.include({
        kind: 'grant',
        amount: 50_000_000,
        balanceAfter: 50_000_000,
        seq: 1,
        reason: 'welcome',
      });
      expect(r.entry.id).to.match(/^txn_/);
      expect(presentBalance(await f.ledger.balance(userId))).to.deep.equal({ balance: 50, reserved: 0, available: 50 });
      expect(f.audit.events).to.have.length(1);
      expect(f.audit.events[0]).to.include({ action: 'credits.grant', outcome: 'success', withTrx: true });
      expect(f.audit.events[0]!.details).to.include({ amount: 50 });
      const account = await tdb.database.db
        .selectFrom('credit_accounts')
        .selectAll()
        .where('user_id', '=', userId)
        .executeTakeFirstOrThrow();
      expect(account.tenant_id).to.match(/^ten_/);
    });

    it('replays a keyed grant and refuses the key for another grant', async () => {
      const first = await f.ledger.grant({
        userId,
        amount: credits(5),
        reason: 'promo',
        actor: admin,
        idempotencyKey: 'grant-1',
      });
      const again = await f.ledger.grant({
        userId,
        amount: credits(5),
        reason: 'promo',
        actor: admin,
        idempotencyKey: 'grant-1',
      });
      expect(again.replayed).to.equal(true);
      expect(again.entry.id).to.equal(first.entry.id);
      expect((await f.ledger.balance(userId)).balance).to.equal(credits(5));
      await expectCode(
        f.ledger.grant({ userId, amount: credits(6), reason: 'promo', actor: admin, idempotencyKey: 'grant-1' }),
        'IDEMPOTENCY_KEY_REUSED',
      );
      // Keys are per user: another user may use the same key.
      const other = await buildUser(tdb.database);
      expect(
        (
          await f.ledger.grant({
            userId: other,
            amount: credits(6),
            reason: 'promo',
            actor: admin,
            idempotencyKey: 'grant-1',
          })
        ).replayed,
      ).to.equal(false);
      await expectCode(
        f.ledger.grant({ userId, amount: credits(1), reason: 'x', actor: admin, idempotencyKey: '' }),
        'INVALID_FIELD',
      );
      await expectCode(
        f.ledger.grant({ userId, amount: credits(1), reason: 'x', actor: admin, idempotencyKey: 'é' }),
        'INVALID_FIELD',
      );
    });

    it('refuses bad amounts and an unknown user, changing nothing', async () => {
      for (const amount of [-1, 0, Number.NaN, 1.5, 1e308, 2e15]) {
        await expectCode(
          f.ledger.grant({ userId, amount: amount as Micros, reason: 'x', actor: admin }),
          'INVALID_FIELD',
        );
        await expectCode(
          f.ledger.reserve({ userId, amount: amount as Micros, ttlMs: MIN, actor: admin }),
          'INVALID_FIELD',
        );
      }
      await expectCode(f.ledger.grant({ userId, amount: credits(1), reason: '  ', actor: admin }), 'INVALID_FIELD');
      await expectCode(
        f.ledger.grant({ userId: newId('usr'), amount: credits(1), reason: 'x', actor: admin }),
        'NOT_FOUND',
      );
      expect(
        await tdb.database.db.selectFrom('credit_ledger').selectAll().where('user_id', '=', userId).execute(),
      ).to.deep.equal([]);
      expect(f.audit.events).to.deep.equal([]);
    });

    it('adjusts up and down, never below what is reserved', async () => {
      await f.ledger.grant({ userId, amount: credits(10), reason: 'x', actor: admin });
      await f.ledger.reserve({ userId, amount: credits(6), ttlMs: MIN, actor: userActor(userId) });
      await f.ledger.adjust({ userId, amount: toMicros(-credits(4)), reason: 'correction', actor: admin });
      const e = await expectCode(
        f.ledger.adjust({ userId, amount: toMicros(-1), reason: 'correction', actor: admin }),
        'INSUFFICIENT_CREDITS',
      );
      expect(e.details).to.deep.equal({ required: 0.000001, available: 0, shortfall: 0.000001 });
      expect(await f.ledger.balance(userId)).to.deep.equal({ balance: credits(6), reserved: credits(6), available: 0 });
    });
  });

  describe('reserve', () => {
    it('holds credits with a lease and refuses more than available with 402 details in credits', async () => {
      await f.ledger.grant({ userId, amount: credits(10), reason: 'x', actor: admin });
      const res = await f.ledger.reserve({
        userId,
        amount: credits(7),
        ttlMs: 5 * MIN,
        sessionId: 'ses_1',
        actor: userActor(userId),
      });
      expect(res.id).to.match(/^res_/);
      expect(res).to.include({
        status: 'open',
        amount: credits(7),
        charged: 0,
        sessionId: 'ses_1',
        owner: f.ledger.instanceId,
      });
      expect(res.expiresAt).to.equal(f.clock.now() + 5 * MIN);
      expect(await f.ledger.balance(userId)).to.deep.equal({
        balance: credits(10),
        reserved: credits(7),
        available: credits(3),
      });
      const err = await expectCode(
        f.ledger.reserve({ userId, amount: toMicros(3_500_000), ttlMs: MIN, actor: userActor(userId) }),
        'INSUFFICIENT_CREDITS',
      );
      expect(err.status).to.equal(402);
      expect(err.details).to.deep.equal({ required: 3.5, available: 3, shortfall: 0.5 });
      const entries = (await f.ledger.transactions(userId)).entries;
      expect(entries[0]).to.include({
        kind: 'reserve',
        amount: 0,
        reservedDelta: credits(7),
        reservedAfter: credits(7),
        balanceAfter: credits(10),
      });
      expect(f.audit.actions()).to.deep.equal(['credits.grant', 'credits.reserve']);
    });

    it('refuses a user without an account (and creates none)', async () => {
      await expectCode(
        f.ledger.reserve({ userId, amount: toMicros(1), ttlMs: MIN, actor: userActor(userId) }),
        'INSUFFICIENT_CREDITS',
      );
      expect(
        await tdb.database.db.selectFrom('credit_accounts').selectAll().where('user_id', '=', userId).execute(),
      ).to.have.length(0);
    });

    it('reserves inside the caller transaction and rolls back with it', async () => {
      await f.ledger.grant({ userId, amount: credits(3), reason: 'x', actor: admin });
      await tdb.database
        .transaction(async (trx) => {
          await f.ledger.reserve({ userId, amount: credits(2), ttlMs: MIN, actor: userActor(userId) }, trx);
          throw new Error('session insert failed');
        })
        .catch((e: Error) => expect(e.message).to.equal('session insert failed'));
      expect((await f.ledger.balance(userId)).reserved).to.equal(0);
      const kept = await tdb.database.transaction((trx) =>
        f.ledger.reserve({ userId, amount: credits(2), ttlMs: MIN, actor: userActor(userId) }, trx),
      );
      expect((await f.ledger.reservation(kept.id))?.status).to.equal('open');
      expect(
        await tdb.database.db.selectFrom('credit_reservations').selectAll().where('user_id', '=', userId).execute(),
      ).to.have.length(1);
    });

    it('refuses bad ttls', async () => {
      await f.ledger.grant({ userId, amount: credits(3), reason: 'x', actor: admin });
      for (const ttlMs of [0, -1, 1.5, 8 * 24 * 3600 * 1000]) {
        await expectCode(
          f.ledger.reserve({ userId, amount: credits(1), ttlMs, actor: userActor(userId) }),
          'INVALID_FIELD',
        );
      }
    });
  });

  describe('settle, release, extend', () => {
    let resId: string;
    beforeEach(async () => {
      await f.ledger.grant({ userId, amount: credits(10), reason: 'x', actor: admin });
      resId = (await f.ledger.reserve({ userId, amount: credits(4), ttlMs: MIN, actor: userActor(userId) })).id;
    });

    it('charges the actual use and releases the rest, exactly once', async () => {
      const r = await f.ledger.settle(resId, toMicros(1_250_000), { userId });
      expect(r).to.deep.include({ charged: 1_250_000, released: 2_750_000, uncovered: 0 });
      expect(r.reservation).to.include({ status: 'settled', charged: 1_250_000, settledAt: f.clock.now() });
      expect(r.balance).to.deep.equal({ balance: 8_750_000, reserved: 0, available: 8_750_000 });
      const kinds = (await f.ledger.transactions(userId)).entries.map((e) => [e.kind, e.amount, e.reservedDelta]);
      expect(kinds).to.deep.equal([
        ['release', 0, -2_750_000],
        ['charge', -1_250_000, -1_250_000],
        ['reserve', 0, 4_000_000],
        ['grant', 10_000_000, 0],
      ]);

      const before = await snapshot();
      const auditCount = f.audit.events.length;
      const twice = await expectCode(f.ledger.settle(resId, toMicros(1)), 'INVALID_STATE');
      expect(twice.status).to.equal(409);
      await expectCode(f.ledger.release(resId), 'INVALID_STATE');
      await expectCode(f.ledger.extend(resId, MIN), 'INVALID_STATE');
      expect(await snapshot()).to.deep.equal(before);
      expect(f.audit.events).to.have.length(auditCount);
      expect(f.audit.actions()).to.include('credits.settle');
    });

    it('caps the charge at the reservation and reports the uncovered part', async () => {
      const r = await f.ledger.settle(resId, credits(9));
      expect(r).to.deep.include({ charged: credits(4), released: 0, uncovered: credits(5) });
      expect(await f.ledger.balance(userId)).to.deep.equal({ balance: credits(6), reserved: 0, available: credits(6) });
    });

    it('settles zero use as a release of everything', async () => {
      const r = await f.ledger.settle(resId, toMicros(0));
      expect(r).to.deep.include({ charged: 0, released: credits(4) });
      expect((await f.ledger.transactions(userId)).entries.map((e) => e.kind)).to.deep.equal([
        'release',
        'reserve',
        'grant',
      ]);
    });

    it('releases everything', async () => {
      const r = await f.ledger.release(resId, { userId, actor: userActor(userId) });
      expect(r.reservation.status).to.equal('released');
      expect(r.released).to.equal(credits(4));
      expect(await f.ledger.balance(userId)).to.deep.equal({
        balance: credits(10),
        reserved: 0,
        available: credits(10),
      });
      expect(f.audit.actions()).to.include('credits.release');
      await expectCode(f.ledger.settle(resId, toMicros(1)), 'INVALID_STATE');
    });

    it("answers NOT_FOUND for an unknown id or another user's reservation", async () => {
      const other = await buildUser(tdb.database);
      const before = await snapshot();
      await expectCode(f.ledger.settle(newId('res'), toMicros(1)), 'NOT_FOUND');
      await expectCode(f.ledger.settle('res_nonsense', toMicros(1)), 'NOT_FOUND');
      await expectCode(f.ledger.settle("'; drop table credit_ledger; --", toMicros(1)), 'NOT_FOUND');
      await expectCode(f.ledger.settle(resId, toMicros(1), { userId: other }), 'NOT_FOUND');
      await expectCode(f.ledger.release(resId, { userId: other }), 'NOT_FOUND');
      await expectCode(f.ledger.extend(resId, MIN, { userId: other }), 'NOT_FOUND');
      expect(await f.ledger.reservation(resId, { userId: other })).to.equal(undefined);
      expect(await snapshot()).to.deep.equal(before);
    });

    it('refuses a negative or fractional actual', async () => {
      await expectCode(f.ledger.settle(resId, -1 as Micros), 'INVALID_FIELD');
      await expectCode(f.ledger.settle(resId, 0.5 as Micros), 'INVALID_FIELD');
      expect((await f.ledger.reservation(resId))?.status).to.equal('open');
    });

    it('extends an open lease from now', async () => {
      f.clock.advance(30_000);
      const r = await f.ledger.extend(resId, 2 * MIN, { userId });
      expect(r.expiresAt).to.equal(f.clock.now() + 2 * MIN);
      expect((await f.ledger.reservation(resId))?.expiresAt).to.equal(f.clock.now() + 2 * MIN);
      await expectCode(f.ledger.extend(resId, 0), 'INVALID_FIELD');
    });

    async function snapshot(): Promise<unknown> {
      return {
        account: await tdb.database.db
          .selectFrom('credit_accounts')
          .selectAll()
          .where('user_id', '=', userId)
          .execute(),
        ledger: await tdb.database.db
          .selectFrom('credit_ledger')
          .selectAll()
          .where('user_id', '=', userId)
          .orderBy('seq')
          .execute(),
        reservations: await tdb.database.db
          .selectFrom('credit_reservations')
          .selectAll()
          .where('user_id', '=', userId)
          .orderBy('id')
          .execute(),
      };
    }
  });

  describe('reaper', () => {
    it('settles every expired open reservation, charging what was used, and holds nothing afterwards', async () => {
      await f.ledger.grant({ userId, amount: credits(20), reason: 'x', actor: admin });
      const a = await f.ledger.reserve({ userId, amount: credits(5), ttlMs: MIN, actor: userActor(userId) });
      const b = await f.ledger.reserve({
        userId,
        amount: credits(5),
        ttlMs: MIN,
        sessionId: 'ses_b',
        actor: userActor(userId),
      });
      const c = await f.ledger.reserve({ userId, amount: credits(5), ttlMs: 10 * MIN, actor: userActor(userId) });
      const d = await f.ledger.reserve({ userId, amount: credits(1), ttlMs: MIN, actor: userActor(userId) });
      await f.ledger.settle(d.id, credits(1));

      expect(await f.ledger.reapExpired(f.clock.now())).to.equal(0);
      f.clock.advance(MIN - 1);
      expect(await f.ledger.reapExpired()).to.equal(0);
      f.clock.advance(1);
      const seen: string[] = [];
      const n = await f.ledger.reapExpired(f.clock.now(), {
        batchSize: 1,
        usedMicros: (r) => {
          seen.push(r.id);
          return r.sessionId === 'ses_b' ? credits(2) : toMicros(0);
        },
      });
      expect(n).to.equal(2);
      expect(seen.sort()).to.deep.equal([a.id, b.id].sort());
      expect(await f.ledger.reservation(a.id)).to.include({ status: 'expired', charged: 0 });
      expect(await f.ledger.reservation(b.id)).to.include({ status: 'expired', charged: credits(2) });
      expect((await f.ledger.reservation(c.id))?.status).to.equal('open');
      expect(await f.ledger.balance(userId)).to.deep.equal({
        balance: credits(17),
        reserved: credits(5),
        available: credits(12),
      });
      expect(f.audit.actions().filter((x) => x === 'credits.expire')).to.have.length(2);

      // An extended lease is not reaped; the rest is, and then nothing is held.
      f.clock.advance(5 * MIN);
      await f.ledger.extend(c.id, 10 * MIN);
      expect(await f.ledger.reapExpired()).to.equal(0);
      f.clock.advance(10 * MIN);
      expect(await f.ledger.reapExpired()).to.equal(1);
      expect(await f.ledger.reapExpired()).to.equal(0);
      expect(await f.ledger.balance(userId)).to.deep.equal({
        balance: credits(17),
        reserved: 0,
        available: credits(17),
      });
      const open = await tdb.database.db
        .selectFrom('credit_reservations')
        .select('id')
        .where('status', '=', 'open')
        .where('user_id', '=', userId)
        .execute();
      expect(open).to.deep.equal([]);
      await expectCode(f.ledger.settle(a.id, toMicros(1)), 'INVALID_STATE');
    });

    it('two reapers racing settle each reservation once', async () => {
      await f.ledger.grant({ userId, amount: credits(20), reason: 'x', actor: admin });
      for (let i = 0; i < 10; i++)
        await f.ledger.reserve({ userId, amount: credits(1), ttlMs: MIN, actor: userActor(userId) });
      f.clock.advance(MIN);
      const other = buildLedger(tdb.database, { clock: f.clock });
      const [x, y] = await Promise.all([f.ledger.reapExpired(), other.ledger.reapExpired()]);
      expect(x + y).to.equal(10);
      expect((await f.ledger.balance(userId)).reserved).to.equal(0);
    });
  });

  describe('transactions', () => {
    it('pages newest first with an opaque cursor and bounded limit', async () => {
      for (let i = 1; i <= 7; i++) {
        await f.ledger.grant({ userId, amount: credits(i), reason: `g${i}`, actor: admin });
        f.clock.advance(1);
      }
      const p1 = await f.ledger.transactions(userId, { limit: 3 });
      expect(p1.entries.map((e) => e.reason)).to.deep.equal(['g7', 'g6', 'g5']);
      expect(p1.nextCursor).to.be.a('string');
      const p2 = await f.ledger.transactions(userId, { limit: 3, cursor: p1.nextCursor });
      expect(p2.entries.map((e) => e.reason)).to.deep.equal(['g4', 'g3', 'g2']);
      const p3 = await f.ledger.transactions(userId, { limit: 3, cursor: p2.nextCursor });
      expect(p3.entries.map((e) => e.reason)).to.deep.equal(['g1']);
      expect(p3.nextCursor).to.equal(null);
      const exact = await f.ledger.transactions(userId, { limit: 7 });
      expect(exact.entries).to.have.length(7);
      expect(exact.nextCursor).to.equal(null);
      expect((await f.ledger.transactions(userId)).entries).to.have.length(7);

      for (const limit of [0, 101, -1, 2.5])
        await expectCode(f.ledger.transactions(userId, { limit }), 'INVALID_FIELD');
      for (const cursor of ['garbage', Buffer.from('{"s":-1}').toString('base64url'), 'x'.repeat(200)]) {
        await expectCode(f.ledger.transactions(userId, { cursor }), 'INVALID_FIELD');
      }
      expect((await f.ledger.transactions(await buildUser(tdb.database))).entries).to.deep.equal([]);

      const json = presentEntry(p1.entries[0]!);
      expect(json).to.include({ kind: 'grant', amount: 7, balance_after: 28, reserved_delta: 0, reason: 'g7' });
      expect(json.created_at).to.match(/^\d{4}-\d\d-\d\dT/);
      expect(json).not.to.have.property('actor');
    });
  });

  describe('reach', () => {
    it('scopes balance, transactions and reservation reads by reach (daemon/policies) in the query', async () => {
      await f.ledger.grant({ userId, amount: credits(2), reason: 'x', actor: admin });
      const res = await f.ledger.reserve({ userId, amount: credits(1), ttlMs: MIN, actor: userActor(userId) });
      const account = await tdb.database.db
        .selectFrom('credit_accounts')
        .select('tenant_id')
        .where('user_id', '=', userId)
        .executeTakeFirstOrThrow();
      const own = account.tenant_id!;
      expect((await f.ledger.balance(userId, { tenantId: own })).balance).to.equal(credits(2));
      expect((await f.ledger.balance(userId, { tenantId: 'ten_other' })).balance).to.equal(0);
      expect((await f.ledger.balance(userId, { userId })).balance).to.equal(credits(2));
      expect((await f.ledger.balance(userId, { userId: 'usr_other' })).balance).to.equal(0);
      expect((await f.ledger.balance(userId, EVERYTHING)).balance).to.equal(credits(2));
      expect((await f.ledger.transactions(userId, { reach: { tenantId: own } })).entries).to.have.length(2);
      expect((await f.ledger.transactions(userId, { reach: { tenantId: 'ten_other' } })).entries).to.deep.equal([]);
      expect(await f.ledger.reservation(res.id, { reach: { tenantId: own } })).to.include({ id: res.id });
      expect(await f.ledger.reservation(res.id, { reach: { tenantId: 'ten_other' } })).to.equal(undefined);
      // A malformed reach is refused, never read as "everything".
      for (const bad of [{ tenantId: null }, {}, { tenantId: '' }]) {
        const err = await f.ledger.balance(userId, bad as never).catch((e: unknown) => e);
        expect(err, JSON.stringify(bad)).to.be.instanceOf(Error);
      }
    });
  });

  describe('verify', () => {
    it('detects a tampered balance', async () => {
      await f.ledger.grant({ userId, amount: credits(5), reason: 'x', actor: admin });
      await tdb.database.db
        .updateTable('credit_accounts')
        .set({ balance: credits(6) })
        .where('user_id', '=', userId)
        .execute();
      const found = await f.ledger.verify();
      expect(found.map((m) => [m.userId, m.check])).to.deep.include.members([
        [userId, 'balance'],
        [userId, 'chain'],
      ]);
      expect(found.find((m) => m.check === 'balance')).to.include({ expected: credits(5), actual: credits(6) });
      await tdb.database.db
        .updateTable('credit_accounts')
        .set({ balance: credits(5) })
        .where('user_id', '=', userId)
        .execute();
    });

    it('detects an extra ledger row and a reservation changed behind its back', async () => {
      await f.ledger.grant({ userId, amount: credits(5), reason: 'x', actor: admin });
      const res = await f.ledger.reserve({ userId, amount: credits(1), ttlMs: MIN, actor: userActor(userId) });
      const extra = newId('txn');
      await tdb.database.db
        .insertInto('credit_ledger')
        .values({
          id: extra,
          user_id: userId,
          tenant_id: null,
          seq: 3,
          kind: 'grant',
          amount: credits(100),
          reserved_delta: 0,
          balance_after: credits(105),
          reserved_after: credits(1),
          reason: 'forged',
          actor_type: 'system',
          actor_id: null,
          reservation_id: null,
          session_id: null,
          idempotency_key: null,
          created_at: f.clock.now(),
        })
        .execute();
      await tdb.database.db
        .updateTable('credit_reservations')
        .set({ status: 'released' })
        .where('id', '=', res.id)
        .execute();
      const found = await f.ledger.verify();
      const checks = found.filter((m) => m.userId === userId).map((m) => m.check);
      expect(checks).to.include.members(['balance', 'reserved', 'chain', 'version']);
      expect(found.find((m) => m.check === 'balance')).to.include({ expected: credits(105), actual: credits(5) });
      // Repair, so the suite's clean-verify check holds.
      await tdb.database.db.deleteFrom('credit_ledger').where('id', '=', extra).execute();
      await tdb.database.db
        .updateTable('credit_reservations')
        .set({ status: 'open' })
        .where('id', '=', res.id)
        .execute();
    });

    it('detects a broken chain even when the sums agree', async () => {
      await f.ledger.grant({ userId, amount: credits(5), reason: 'x', actor: admin });
      const g2 = await f.ledger.grant({ userId, amount: credits(5), reason: 'x', actor: admin });
      await tdb.database.db
        .updateTable('credit_ledger')
        .set({ balance_after: credits(7) })
        .where('id', '=', g2.entry.id)
        .execute();
      const found = await f.ledger.verify();
      expect(found.filter((m) => m.userId === userId).map((m) => [m.check, m.entryId ?? null])).to.deep.include([
        'chain',
        g2.entry.id,
      ]);
      await tdb.database.db
        .updateTable('credit_ledger')
        .set({ balance_after: credits(10) })
        .where('id', '=', g2.entry.id)
        .execute();
    });
  });

  describe('storage constraints', () => {
    it('refuses an account with available below zero even written by hand', async () => {
      await f.ledger.grant({ userId, amount: credits(1), reason: 'x', actor: admin });
      let failed = false;
      try {
        await tdb.database.db
          .updateTable('credit_accounts')
          .set({ reserved: credits(2) })
          .where('user_id', '=', userId)
          .execute();
      } catch {
        failed = true;
      }
      expect(failed, 'CHECK constraint').to.equal(true);
      const r = await sql<{ n: number }>`select count(*) as n from credit_accounts where balance < reserved`.execute(
        tdb.database.db,
      );
      expect(Number(r.rows[0]!.n)).to.equal(0);
    });
  });

  describe('metrics', () => {
    it('exposes reservation gauges and micros counters', async () => {
      await f.ledger.grant({ userId, amount: credits(5), reason: 'x', actor: admin });
      const res = await f.ledger.reserve({ userId, amount: credits(2), ttlMs: MIN, actor: userActor(userId) });
      let text = await f.metrics.registry.metrics();
      expect(text).to.match(/keen_credits_granted_micros_total 5000000/);
      expect(text).to.match(/keen_credit_reservations_open [1-9]/);
      expect(text).to.match(/keen_credits_reserved \d/);
      await f.ledger.settle(res.id, toMicros(500_000));
      text = await f.metrics.registry.metrics();
      expect(text).to.match(/keen_credits_charged_micros_total 500000\b/);
      expect(text).to.match(/keen_credits_released_micros_total 1500000\b/);
      expect(text).not.to.contain(userId);
    });
  });
});
