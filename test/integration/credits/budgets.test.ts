import { expect } from 'chai';
import { BudgetBook, BudgetCalendar, type ThresholdCrossing } from '../../../daemon/credits/budgets.js';
import { CreditLedger } from '../../../daemon/credits/ledger.js';
import type { Micros } from '../../../daemon/credits/money.js';
import { GatewayError } from '../../../daemon/errors.js';
import { newId } from '../../../daemon/ids.js';
import { ManualClock } from '../../../daemon/clock.js';
import { describeStorage } from '../../helpers/backends.js';
import { openTestDatabase, type TestDatabase } from '../../helpers/database.js';
import { TEST_POSTGRES_URL } from '../../helpers/env.js';
import { creditRepositories } from '../../../daemon/storage/repos/credits.js';
import { RecordingAuditLogger, buildUser, expectInvariants, openSecondDatabase } from './helpers.js';

const actor = { type: 'user' as const, id: 'usr_budget' };
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** Credits (decimals allowed) as micro-credits. */
const cr = (n: number): Micros => Math.round(n * 1_000_000) as Micros;

describe('budgets/calendar', () => {
  it('days, weeks (from Monday) and months start at midnight in the configured zone, DST included', () => {
    const utc = new BudgetCalendar('UTC');
    const t = Date.UTC(2026, 2, 29, 12, 0); // Sunday 29 March 2026, noon UTC
    expect(utc.window('day', t)).to.deep.equal({ start: Date.UTC(2026, 2, 29), end: Date.UTC(2026, 2, 30) });
    expect(utc.window('week', t)).to.deep.equal({ start: Date.UTC(2026, 2, 23), end: Date.UTC(2026, 2, 30) });
    expect(utc.window('month', t)).to.deep.equal({ start: Date.UTC(2026, 2, 1), end: Date.UTC(2026, 3, 1) });
    expect(utc.window('total', t)).to.deep.equal({ start: 0, end: null });
    // Berlin springs forward on 29 March 2026: that day is 23 hours long.
    const berlin = new BudgetCalendar('Europe/Berlin');
    const day = berlin.window('day', t);
    expect(day.start).to.equal(Date.UTC(2026, 2, 28, 23, 0)); // 00:00 CET
    expect(day.end! - day.start).to.equal(23 * HOUR);
    // Just before midnight in Berlin it is still the previous local day.
    expect(berlin.window('day', Date.UTC(2026, 2, 28, 22, 59)).start).to.equal(Date.UTC(2026, 2, 27, 23, 0));
    expect(new BudgetCalendar('Asia/Kolkata').window('day', Date.UTC(2026, 0, 1, 20, 0)).start).to.equal(
      Date.UTC(2026, 0, 1, 18, 30),
    );
  });
});

describeStorage('budgets/ledger', (backend) => {
  let tdb: TestDatabase;
  let clock: ManualClock;
  let audit: RecordingAuditLogger;
  let crossings: ThresholdCrossing[];
  let book: BudgetBook;
  let ledger: CreditLedger;

  before(async () => {
    tdb = await openTestDatabase(backend);
  });
  after(async () => tdb?.close());
  beforeEach(() => {
    clock = new ManualClock(Date.UTC(2026, 5, 10, 9, 0));
    audit = new RecordingAuditLogger();
    crossings = [];
    const repositories = creditRepositories(tdb.database);
    const calendar = new BudgetCalendar('UTC');
    book = new BudgetBook({ repository: repositories.budgets, calendar, audit, onThreshold: (c) => crossings.push(c) });
    ledger = new CreditLedger({ database: tdb.database, repositories, clock, audit, budgets: book });
  });
  afterEach(async () => {
    await ledger.reapExpired(Number.MAX_SAFE_INTEGER);
    await expectInvariants(tdb.database);
    expect(await ledger.verify()).to.deep.equal([]);
  });

  async function funded(amount = 100, tenantId?: string | null): Promise<string> {
    const userId = await buildUser(tdb.database, tenantId === undefined ? {} : { tenantId });
    await ledger.grant({ userId, amount: cr(amount), reason: 'budget test', actor });
    return userId;
  }

  async function setBudget(
    subject: 'api_key' | 'user' | 'tenant',
    id: string,
    amount: number,
    period: 'day' | 'week' | 'month' | 'total',
    tenantId: string | null = null,
  ) {
    await tdb.database.transaction((t) =>
      book.set(t, { subject, subjectId: id, tenantId, amount: cr(amount), period, setBy: 'owner' }, clock.now()),
    );
  }

  const reserve = (userId: string, amount: number, apiKeyId: string | null = null) =>
    ledger.reserve({ userId, amount: cr(amount), ttlMs: 10 * 60_000, actor, apiKeyId });

  async function refusal(p: Promise<unknown>): Promise<GatewayError> {
    try {
      await p;
    } catch (err) {
      expect(err).to.be.instanceOf(GatewayError);
      return err as GatewayError;
    }
    throw new Error('expected a refusal');
  }

  it('50 parallel reservations on a key with a budget for 5: exactly 5 admitted, the rest BUDGET_EXCEEDED naming the key', async () => {
    const userId = await funded(100);
    const keyId = newId('key');
    await setBudget('api_key', keyId, 5, 'day');
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => reserve(userId, 1, keyId)));
    expect(results.filter((r) => r.status === 'fulfilled')).to.have.length(5);
    for (const r of results.filter((x): x is PromiseRejectedResult => x.status === 'rejected')) {
      expect(r.reason).to.be.instanceOf(GatewayError);
      const e = r.reason as GatewayError;
      expect(e.code).to.equal('BUDGET_EXCEEDED');
      expect(e.status).to.equal(402);
      const details = e.details as { budget: Record<string, unknown>; required: number };
      expect(details.required).to.equal(1);
      expect(details.budget).to.include({
        subject: 'api_key',
        id: keyId,
        period: 'day',
        amount: 5,
        used: 5,
        remaining: 0,
      });
      expect(details.budget.resets_at).to.equal(new Date(Date.UTC(2026, 5, 11)).toISOString());
    }
    expect((await ledger.balance(userId)).reserved).to.equal(cr(5));
    // Without the key the user's other spending is not capped by the key's budget.
    await reserve(userId, 10);
  });

  it('a key, its user and the tenant each cap; the tightest one refuses and nothing is held', async () => {
    const tenantId = newId('ten');
    await tdb.database.db
      .insertInto('tenants')
      .values({ id: tenantId, name: `t-${tenantId}`, created_at: clock.now() })
      .execute();
    const a = await funded(100, tenantId);
    const b = await funded(100, tenantId);
    await setBudget('tenant', tenantId, 3, 'month', tenantId);
    await setBudget('user', a, 10, 'week', tenantId);
    // Two members race for a tenant budget of 3: exactly 3 credits admitted in all.
    const results = await Promise.allSettled([
      ...Array.from({ length: 10 }, () => reserve(a, 1)),
      ...Array.from({ length: 10 }, () => reserve(b, 1)),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).to.have.length(3);
    const e = (results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as GatewayError;
    expect((e.details as { budget: { subject: string } }).budget.subject).to.equal('tenant');
    const held = (await ledger.balance(a)).reserved + (await ledger.balance(b)).reserved;
    expect(held).to.equal(cr(3));
  });

  it('settlement gives back what was not charged, to the period the hold was made in', async () => {
    const userId = await funded(100);
    await setBudget('user', userId, 5, 'day');
    const r = await reserve(userId, 5);
    expect((await refusal(reserve(userId, 0.5))).code).to.equal('BUDGET_EXCEEDED');
    await ledger.settle(r.id, cr(2) as Micros);
    await reserve(userId, 3);
    expect((await refusal(reserve(userId, 0.000001))).code).to.equal('BUDGET_EXCEEDED');
    const [st] = await book.statusOf(tdb.database.db, [{ subject: 'user', id: userId }], clock.now());
    expect(st).to.include({ used: cr(5), remaining: 0 });
  });

  it('a hold made before midnight and settled after it gives back to the day it was made in', async () => {
    const userId = await funded(100);
    await setBudget('user', userId, 5, 'day');
    clock.set(Date.UTC(2026, 5, 10, 23, 30));
    const r = await reserve(userId, 5);
    clock.set(Date.UTC(2026, 5, 11, 0, 30));
    await ledger.settle(r.id, cr(1) as Micros);
    const yesterday = await book.statusOf(
      tdb.database.db,
      [{ subject: 'user', id: userId }],
      Date.UTC(2026, 5, 10, 12),
    );
    expect(yesterday[0]).to.include({ used: cr(1) });
    // Today is untouched by yesterday's run: the whole budget is there.
    await reserve(userId, 5);
  });

  it('resets on the period boundary (manual clock); a total budget never does', async () => {
    const userId = await funded(100);
    const keyId = newId('key');
    await setBudget('api_key', keyId, 2, 'day');
    await setBudget('user', userId, 5, 'total');
    const r1 = await reserve(userId, 2, keyId);
    expect((await refusal(reserve(userId, 1, keyId))).code).to.equal('BUDGET_EXCEEDED');
    clock.set(Date.UTC(2026, 5, 10, 23, 59, 59, 999));
    expect((await refusal(reserve(userId, 1, keyId))).code).to.equal('BUDGET_EXCEEDED');
    clock.set(Date.UTC(2026, 5, 11, 0, 0));
    await ledger.settle(r1.id, cr(2) as Micros);
    const r2 = await reserve(userId, 2, keyId);
    await ledger.settle(r2.id, cr(2) as Micros);
    clock.advance(40 * DAY);
    await reserve(userId, 1, keyId);
    // 2 + 2 + 1 of the total 5 used: nothing more, whatever the day.
    const e = await refusal(reserve(userId, 1, keyId));
    expect((e.details as { budget: { subject: string; resets_at: unknown } }).budget).to.include({
      subject: 'user',
      resets_at: null,
    });
  });

  it('announces each threshold once per period: audit entry in the transaction, then the callback', async () => {
    const userId = await funded(100);
    await setBudget('user', userId, 10, 'day');
    const r = await reserve(userId, 8);
    expect(crossings.map((c) => c.threshold)).to.deep.equal([80]);
    const auditOf = () => audit.events.filter((e) => e.action === 'budget.threshold');
    expect(auditOf()).to.have.length(1);
    expect(auditOf()[0]!.withTrx).to.equal(true);
    expect(auditOf()[0]!.details).to.include({ threshold: 80, used: 8, amount: 10 });
    await ledger.release(r.id);
    await reserve(userId, 9); // 90%: 80 was announced already this period
    expect(crossings).to.have.length(1);
    await reserve(userId, 1); // 100%
    expect(crossings.map((c) => c.threshold)).to.deep.equal([80, 100]);
    clock.advance(DAY);
    await reserve(userId, 10); // a new day: straight to 100, announced once
    expect(crossings.map((c) => c.threshold)).to.deep.equal([80, 100, 100]);
    expect(auditOf()).to.have.length(3);
  });

  it('a refused reservation announces nothing and counts nothing', async () => {
    const userId = await funded(100);
    await setBudget('user', userId, 1, 'day');
    expect((await refusal(reserve(userId, 2))).code).to.equal('BUDGET_EXCEEDED');
    expect(crossings).to.deep.equal([]);
    const [st] = await book.statusOf(tdb.database.db, [{ subject: 'user', id: userId }], clock.now());
    expect(st!.used).to.equal(0);
    expect((await ledger.balance(userId)).reserved).to.equal(0);
  });

  it('a budget set mid-period counts what the period already spent', async () => {
    const userId = await funded(100);
    const r = await reserve(userId, 3);
    await ledger.settle(r.id, cr(1.5) as Micros);
    await reserve(userId, 1); // still open: counts in full
    await setBudget('user', userId, 3, 'day');
    const [st] = await book.statusOf(tdb.database.db, [{ subject: 'user', id: userId }], clock.now());
    expect(st).to.include({ used: cr(2.5), remaining: cr(0.5) });
    expect((await refusal(reserve(userId, 0.6))).code).to.equal('BUDGET_EXCEEDED');
    await reserve(userId, 0.5);
  });

  it('only the role that set a budget, or a higher one, changes or removes it', async () => {
    const userId = await funded(10);
    await tdb.database.transaction((t) =>
      book.set(
        t,
        { subject: 'user', subjectId: userId, tenantId: null, amount: cr(5), period: 'day', setBy: 'tenant_admin' },
        clock.now(),
      ),
    );
    const e = await refusal(tdb.database.transaction((t) => book.remove(t, 'user', userId, 'owner')));
    expect(e.code).to.equal('FORBIDDEN');
    expect(await book.get(tdb.database.db, 'user', userId)).to.include({ setBy: 'tenant_admin' });
    await tdb.database.transaction((t) =>
      book.set(
        t,
        { subject: 'user', subjectId: userId, tenantId: null, amount: cr(7), period: 'day', setBy: 'platform_admin' },
        clock.now(),
      ),
    );
    expect(
      (await refusal(tdb.database.transaction((t) => book.remove(t, 'user', userId, 'tenant_admin')))).code,
    ).to.equal('FORBIDDEN');
    expect(await tdb.database.transaction((t) => book.remove(t, 'user', userId, 'platform_admin'))).to.include({
      amount: cr(7),
    });
    expect(await book.get(tdb.database.db, 'user', userId)).to.equal(undefined);
  });

  if (backend === 'postgres')
    it('two daemons (two pools) racing on one key budget admit exactly the budget', async () => {
      const userId = await funded(100);
      const keyId = newId('key');
      await setBudget('api_key', keyId, 5, 'day');
      const other = openSecondDatabase(TEST_POSTGRES_URL!, 10);
      try {
        const repos2 = creditRepositories(other);
        const book2 = new BudgetBook({ repository: repos2.budgets, calendar: new BudgetCalendar('UTC'), audit });
        const ledger2 = new CreditLedger({ database: other, repositories: repos2, clock, audit, budgets: book2 });
        const results = await Promise.allSettled(
          Array.from({ length: 50 }, (_, i) =>
            (i % 2 ? ledger2 : ledger).reserve({ userId, amount: cr(1), ttlMs: 60_000, actor, apiKeyId: keyId }),
          ),
        );
        expect(results.filter((r) => r.status === 'fulfilled')).to.have.length(5);
      } finally {
        await other.close();
      }
    });
});
