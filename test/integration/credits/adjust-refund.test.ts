import { expect } from 'chai';
import { schemaId } from '../../../daemon/http/validation.js';
import { newId } from '../../../daemon/ids.js';
import { SYSTEM_ACTOR } from '../../../daemon/credits/ledger.js';
import { credits } from '../../../daemon/credits/money.js';
import { createAjv } from '../../../daemon/schemas.js';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import {
  auditRows,
  buildApiKey,
  buildTenant,
  buildUser,
  mintToken,
  platformAdmin,
  type TestUser,
} from '../../helpers/factories.js';
import type { ApiResponse } from '../../helpers/http.js';
import { ConflictError, KeenClient } from '../../../sdk/src/index.js';
import { execute, expectLedgerClean, grant, waitForEnd } from '../../helpers/sessions.js';

const ajv = createAjv();

function expectShape(r: ApiResponse, schema: string): void {
  const validate = ajv.getSchema(schemaId(schema))!;
  expect(validate(r.body), `${schema}: ${JSON.stringify(validate.errors)}\n${r.text}`).to.equal(true);
}

/**
 * Admin adjustments (`POST /v1/admin/credits/adjust`) and refunds of a finished
 * session's charge (`POST /v1/admin/sessions/:id/refund`): platform admins only,
 * idempotent, never below what is reserved, never more than was charged.
 */
describeStorage('credit adjustments and session refunds over HTTP', (backend) => {
  let d: TestDaemon;
  let root: string;
  let tenantAdmin: TestUser;
  let tenantMember: TestUser;

  const adjust = (body: unknown, options: { token?: string; key?: string } = {}) =>
    d.api.post('/v1/admin/credits/adjust', body, {
      token: options.token ?? root,
      headers: options.key ? { 'idempotency-key': options.key } : {},
    });
  const refund = (sessionId: string, body: unknown, options: { token?: string; key?: string } = {}) =>
    d.api.post(`/v1/admin/sessions/${sessionId}/refund`, body, {
      token: options.token ?? root,
      headers: options.key ? { 'idempotency-key': options.key } : {},
    });
  const entries = (userId: string) =>
    d.container.database.db
      .selectFrom('credit_ledger')
      .selectAll()
      .where('user_id', '=', userId)
      .orderBy('seq')
      .execute();
  const idempotencyRows = () => d.container.database.db.selectFrom('idempotency_keys').selectAll().execute();

  /** A session of `u` that ended having been charged exactly 2 credits (the agent overspends its budget of 2). */
  async function chargedSession(u: TestUser, apiKey?: string): Promise<string> {
    const r = apiKey
      ? await d.api.post(
          '/v1/agents/execute',
          { vision: 'Spend a great deal of tokens [overspend]', options: { costBudget: 2 } },
          { apiKey },
        )
      : await execute(d, u, 'Spend a great deal of tokens [overspend]', { costBudget: 2 });
    expect(r.status, r.text).to.equal(200);
    const end = await waitForEnd(d, u, r.body.session.id);
    expect(end.status).to.equal('budget_exhausted');
    expect(end.final_cost).to.equal(2);
    return end.id;
  }

  before(async function () {
    this.timeout(60_000);
    d = await startDaemon({ backend, config: { credits: { reservation_ttl_seconds: 30 } } });
    root = mintToken(d, await platformAdmin(d));
    const tenant = await buildTenant(d);
    tenantAdmin = await buildUser(d, { role: 'admin', tenantId: tenant });
    tenantMember = await buildUser(d, { tenantId: tenant, tier: 'team' });
  });
  after(async () => d?.stop());

  describe('adjust', () => {
    it('adds and removes credits (by email and by id), as adjustment entries, audited, visible in the ledger', async () => {
      const u = await buildUser(d, { tier: 'team' });
      await grant(d, u, 10);
      const up = await adjust({ user_id: u.email, amount: 2.5, reason: 'goodwill' });
      expect(up.status, up.text).to.equal(201);
      expectShape(up, 'CreditAdjustResponse');
      expect(up.body.transaction).to.include({
        kind: 'adjustment',
        amount: 2.5,
        reserved_delta: 0,
        balance_after: 12.5,
        reason: 'goodwill',
        session_id: null,
      });
      expect(up.body.balance).to.deep.equal({ balance: 12.5, reserved: 0, available: 12.5 });

      const down = await adjust({ user_id: u.user.id, amount: -1.5, reason: 'double-billed run' });
      expect(down.status, down.text).to.equal(201);
      expect(down.body.transaction).to.include({ kind: 'adjustment', amount: -1.5, balance_after: 11 });
      expect(down.body.balance).to.deep.equal({ balance: 11, reserved: 0, available: 11 });

      const list = await d.api.get('/v1/credits/transactions', { token: u.token });
      expect(
        list.body.transactions
          .slice(0, 2)
          .map((t: { kind: string; amount: number; reason: string }) => [t.kind, t.amount, t.reason]),
      ).to.deep.equal([
        ['adjustment', -1.5, 'double-billed run'],
        ['adjustment', 2.5, 'goodwill'],
      ]);
      const audit = (await auditRows(d)).filter((a) => a.action === 'credits.adjust' && a.target_id === u.user.id);
      expect(audit.map((a) => JSON.parse(String(a.details)).amount)).to.deep.equal([2.5, -1.5]);
      expect(audit[0]).to.include({ outcome: 'success', actor_type: 'admin', target_type: 'user' });
      await expectLedgerClean(d);
    });

    it('refuses 0, more than 6 decimals, strings and a missing reason with 400, writing nothing', async () => {
      const u = await buildUser(d);
      await grant(d, u, 1);
      for (const body of [
        { user_id: u.user.id, amount: 0, reason: 'zero' },
        { user_id: u.user.id, amount: -0.0000001, reason: 'tiny' },
        { user_id: u.user.id, amount: '-1', reason: 'string' },
        { user_id: u.user.id, amount: -1 },
        { user_id: u.user.id, amount: -1e10, reason: 'huge' },
      ]) {
        const r = await adjust(body);
        expect(r.status, `${JSON.stringify(body)}: ${r.text}`).to.equal(400);
      }
      expect((await entries(u.user.id)).map((e) => e.kind)).to.deep.equal(['grant']);
    });

    it('never takes the balance below what is reserved: 402 INSUFFICIENT_CREDITS, nothing written (not even the key)', async () => {
      const u = await buildUser(d);
      await grant(d, u, 10);
      const hold = await d.container.ledger.reserve({
        userId: u.user.id,
        amount: credits(7),
        ttlMs: 60_000,
        actor: SYSTEM_ACTOR,
      });
      const before = { entries: await entries(u.user.id), audit: (await auditRows(d)).length };
      const r = await adjust({ user_id: u.user.id, amount: -3.5, reason: 'too much' }, { key: 'below-reserved-1' });
      expect(r.status, r.text).to.equal(402);
      expect(r.body.error.code).to.equal('INSUFFICIENT_CREDITS');
      expect(r.body.error.details).to.deep.equal({ required: 3.5, available: 3, shortfall: 0.5 });
      expect(await entries(u.user.id)).to.deep.equal(before.entries);
      expect((await auditRows(d)).length).to.equal(before.audit);
      expect((await idempotencyRows()).filter((k) => k.key === 'below-reserved-1')).to.deep.equal([]);
      // Exactly what is available may go.
      const ok = await adjust({ user_id: u.user.id, amount: -3, reason: 'all that is free' });
      expect(ok.status, ok.text).to.equal(201);
      expect(ok.body.balance).to.deep.equal({ balance: 7, reserved: 7, available: 0 });
      await d.container.ledger.release(hold.id);
      await expectLedgerClean(d);
    });

    it('is idempotent: a retry answers the same entry, another body with the key is 409, a retry after the stored response is gone still adjusts once', async () => {
      const u = await buildUser(d);
      await grant(d, u, 5);
      const body = { user_id: u.email, amount: -1.25, reason: 'correction 4711' };
      const first = await adjust(body, { key: 'adj-4711' });
      expect(first.status, first.text).to.equal(201);
      const again = await adjust(body, { key: 'adj-4711' });
      expect(again.status, again.text).to.equal(201);
      expect(again.headers.get('idempotent-replayed')).to.equal('true');
      expect(again.body).to.deep.equal(first.body);

      const other = await adjust({ ...body, amount: -2 }, { key: 'adj-4711' });
      expect(other.status, other.text).to.equal(409);
      expect(other.body.error.code).to.equal('IDEMPOTENCY_KEY_REUSED');

      // The stored response is gone (24 h passed): the ledger's own key still answers the first adjustment.
      await d.container.database.db.deleteFrom('idempotency_keys').where('key', '=', 'adj-4711').execute();
      const late = await adjust(body, { key: 'adj-4711' });
      expect(late.status, late.text).to.equal(201);
      expect(late.headers.get('idempotent-replayed')).to.equal('true');
      expect(late.body.transaction.id).to.equal(first.body.transaction.id);
      await d.container.database.db.deleteFrom('idempotency_keys').where('key', '=', 'adj-4711').execute();
      const lateOther = await adjust({ ...body, reason: 'another correction' }, { key: 'adj-4711' });
      expect(lateOther.status, lateOther.text).to.equal(409);
      expect(lateOther.body.error.code).to.equal('IDEMPOTENCY_KEY_REUSED');

      expect((await entries(u.user.id)).filter((e) => e.kind === 'adjustment')).to.have.length(1);
      expect((await d.container.ledger.balance(u.user.id)).balance).to.equal(3_750_000);
    });

    it('is for platform admins only: a tenant admin is 403 FORBIDDEN (even for its own member), a member 403, nothing written', async () => {
      await grant(d, tenantMember, 3);
      const before = await entries(tenantMember.user.id);
      const byAdmin = await adjust(
        { user_id: tenantMember.user.id, amount: 1, reason: 'mint' },
        { token: tenantAdmin.token },
      );
      expect(byAdmin.status, byAdmin.text).to.equal(403);
      expect(byAdmin.body.error.code).to.equal('FORBIDDEN');
      const byMember = await adjust(
        { user_id: tenantMember.user.id, amount: 1, reason: 'mint' },
        { token: tenantMember.token },
      );
      expect(byMember.status, byMember.text).to.equal(403);
      expect(byMember.body.error.code).to.be.oneOf(['FORBIDDEN', 'INSUFFICIENT_SCOPE']);
      expect(await entries(tenantMember.user.id)).to.deep.equal(before);
    });

    it('an unknown user is 404', async () => {
      const r = await adjust({ user_id: 'nobody-here@example.test', amount: 1, reason: 'x' });
      expect(r.status, r.text).to.equal(404);
    });
  });

  describe('refund', () => {
    it('refunds part, then the rest by default; a third refund is 409 REFUND_EXCEEDS_CHARGE; visible in the ledger; audited', async function () {
      this.timeout(30_000);
      const u = await buildUser(d, { tier: 'team' });
      await grant(d, u, 10);
      const key = await buildApiKey(d, u, { scopes: ['agents:execute', 'sessions:read'] });
      const sid = await chargedSession(u, key.key);
      const reservation = await d.container.database.db
        .selectFrom('credit_reservations')
        .selectAll()
        .where('session_id', '=', sid)
        .executeTakeFirstOrThrow();
      expect(reservation.api_key_id, 'the reservation names the key that spent').to.equal(key.id);

      const part = await refund(sid, { amount: 0.5, reason: 'partial outage' });
      expect(part.status, part.text).to.equal(201);
      expectShape(part, 'CreditRefundResponse');
      expect(part.body).to.include({ user_id: u.user.id, session_id: sid, charged: 2, refunded: 0.5, refundable: 1.5 });
      expect(part.body.transaction).to.include({
        kind: 'refund',
        amount: 0.5,
        reserved_delta: 0,
        balance_after: 8.5,
        reason: 'partial outage',
        session_id: sid,
        reservation_id: reservation.id,
      });
      expect(part.body.balance).to.deep.equal({ balance: 8.5, reserved: 0, available: 8.5 });

      const [row] = (await entries(u.user.id)).filter((e) => e.kind === 'refund');
      expect(row).to.include({
        session_id: sid,
        reservation_id: reservation.id,
        reserved_delta: 0,
        api_key_id: reservation.api_key_id,
        actor_type: 'admin',
      });

      const tooMuch = await refund(sid, { amount: 1.6, reason: 'more than is left' });
      expect(tooMuch.status, tooMuch.text).to.equal(409);
      expect(tooMuch.body.error.code).to.equal('REFUND_EXCEEDS_CHARGE');
      expect(tooMuch.body.error.details).to.deep.equal({ charged: 2, refunded: 0.5, refundable: 1.5, requested: 1.6 });

      const rest = await refund(sid, { reason: 'the rest' });
      expect(rest.status, rest.text).to.equal(201);
      expect(rest.body).to.include({ charged: 2, refunded: 2, refundable: 0 });
      expect(rest.body.transaction).to.include({ kind: 'refund', amount: 1.5, balance_after: 10 });

      const third = await refund(sid, { amount: 0.000001, reason: 'one more' });
      expect(third.status, third.text).to.equal(409);
      expect(third.body.error.code).to.equal('REFUND_EXCEEDS_CHARGE');

      const list = await d.api.get('/v1/credits/transactions', { token: u.token });
      expect(
        list.body.transactions
          .slice(0, 2)
          .map((t: { kind: string; amount: number; session_id: string; reason: string }) => [
            t.kind,
            t.amount,
            t.session_id,
            t.reason,
          ]),
      ).to.deep.equal([
        ['refund', 1.5, sid, 'the rest'],
        ['refund', 0.5, sid, 'partial outage'],
      ]);
      const audit = (await auditRows(d)).filter((a) => a.action === 'credits.refund' && a.target_id === sid);
      expect(audit).to.have.length(2);
      expect(audit[0]).to.include({ outcome: 'success', actor_type: 'admin', target_type: 'session' });
      expect(JSON.parse(String(audit[1]!.details))).to.include({
        user_id: u.user.id,
        amount: 1.5,
        charged: 2,
        refunded: 2,
        reservation_id: reservation.id,
      });
      await expectLedgerClean(d);
    });

    it('10 parallel refunds of the whole charge: exactly one lands', async function () {
      this.timeout(30_000);
      const u = await buildUser(d, { tier: 'team' });
      await grant(d, u, 10);
      const sid = await chargedSession(u);
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          refund(sid, { reason: 'parallel refund' }, i % 2 === 0 ? { key: `par-${sid}-${i}` } : {}),
        ),
      );
      const statuses = results.map((r) => r.status).sort();
      expect(statuses, results.map((r) => r.text).join('\n')).to.deep.equal([
        201, 409, 409, 409, 409, 409, 409, 409, 409, 409,
      ]);
      for (const r of results.filter((x) => x.status === 409))
        expect(r.body.error.code).to.equal('REFUND_EXCEEDS_CHARGE');
      const refunds = (await entries(u.user.id)).filter((e) => e.kind === 'refund');
      expect(refunds.map((e) => Number(e.amount))).to.deep.equal([2_000_000]);
      expect((await d.container.ledger.balance(u.user.id)).balance).to.equal(10_000_000);
      await expectLedgerClean(d);
    });

    it('is idempotent: a retry answers the same refund even once it was refunded in full, also after the stored response is gone', async function () {
      this.timeout(30_000);
      const u = await buildUser(d, { tier: 'team' });
      await grant(d, u, 10);
      const sid = await chargedSession(u);
      const first = await refund(sid, { reason: 'sorry' }, { key: 'ref-1' });
      expect(first.status, first.text).to.equal(201);
      const again = await refund(sid, { reason: 'sorry' }, { key: 'ref-1' });
      expect(again.status, again.text).to.equal(201);
      expect(again.headers.get('idempotent-replayed')).to.equal('true');
      expect(again.body).to.deep.equal(first.body);
      const other = await refund(sid, { amount: 1, reason: 'sorry' }, { key: 'ref-1' });
      expect(other.status, other.text).to.equal(409);
      expect(other.body.error.code).to.equal('IDEMPOTENCY_KEY_REUSED');
      await d.container.database.db.deleteFrom('idempotency_keys').where('key', '=', 'ref-1').execute();
      const late = await refund(sid, { reason: 'sorry' }, { key: 'ref-1' });
      expect(late.status, late.text).to.equal(201);
      expect(late.headers.get('idempotent-replayed')).to.equal('true');
      expect(late.body.transaction.id).to.equal(first.body.transaction.id);
      expect((await entries(u.user.id)).filter((e) => e.kind === 'refund')).to.have.length(1);
    });

    it('a running session is 409 INVALID_STATE; a session charged nothing is 409 REFUND_EXCEEDS_CHARGE; an unknown one 404', async function () {
      this.timeout(30_000);
      const u = await buildUser(d, { tier: 'team' });
      await grant(d, u, 10);
      const running = await execute(d, u, 'Take your time with this [slow:400] [iterations:50]', { costBudget: 5 });
      expect(running.status, running.text).to.equal(200);
      const rid = running.body.session.id;
      const before = await entries(u.user.id);
      const r = await refund(rid, { reason: 'too early' });
      expect(r.status, r.text).to.equal(409);
      expect(r.body.error.code).to.equal('INVALID_STATE');
      expect(await entries(u.user.id)).to.deep.equal(before);
      await d.api.post(`/v1/sessions/${rid}/cancel`, {}, { token: u.token });
      await waitForEnd(d, u, rid);

      // A finished session whose reservation was released whole: final cost 0.
      const model = await d.container.database.db
        .selectFrom('sessions')
        .selectAll()
        .where('id', '=', rid)
        .executeTakeFirstOrThrow();
      const zeroId = newId('ses');
      const hold = await d.container.ledger.reserve({
        userId: u.user.id,
        amount: credits(1),
        ttlMs: 60_000,
        sessionId: zeroId,
        actor: SYSTEM_ACTOR,
      });
      await d.container.database.db
        .insertInto('sessions')
        .values({ ...model, id: zeroId, reservation_id: hold.id, status: 'completed', final_cost: 0, cost_so_far: 0 })
        .execute();
      await d.container.ledger.release(hold.id);
      const zero = await refund(zeroId, { reason: 'nothing to give back' });
      expect(zero.status, zero.text).to.equal(409);
      expect(zero.body.error.code).to.equal('REFUND_EXCEEDS_CHARGE');
      expect(zero.body.error.details).to.include({ charged: 0, refundable: 0 });

      const unknown = await refund(newId('ses'), { reason: 'who?' });
      expect(unknown.status, unknown.text).to.equal(404);
      const junk = await refund('not-a-session', { reason: 'who?' });
      expect(junk.status, junk.text).to.equal(404);
      await expectLedgerClean(d);
    });

    it("is for platform admins only: a tenant admin (its own member's session) and the member are 403, nothing written", async function () {
      this.timeout(30_000);
      await grant(d, tenantMember, 5);
      const sid = await chargedSession(tenantMember);
      const before = await entries(tenantMember.user.id);
      const byAdmin = await refund(sid, { reason: 'mine to give' }, { token: tenantAdmin.token });
      expect(byAdmin.status, byAdmin.text).to.equal(403);
      expect(byAdmin.body.error.code).to.equal('FORBIDDEN');
      const byMember = await refund(sid, { reason: 'give it back' }, { token: tenantMember.token });
      expect(byMember.status, byMember.text).to.equal(403);
      expect(byMember.body.error.code).to.be.oneOf(['FORBIDDEN', 'INSUFFICIENT_SCOPE']);
      expect(await entries(tenantMember.user.id)).to.deep.equal(before);
    });

    it('the SDK: client.credits.adjust() and client.sessions.refund(), idempotent with a given key', async function () {
      this.timeout(30_000);
      const u = await buildUser(d, { tier: 'team' });
      await grant(d, u, 10);
      const sid = await chargedSession(u);
      const client = new KeenClient({ baseUrl: d.url, accessToken: root });
      const a = await client.credits.adjust(
        { user_id: u.email, amount: -0.5, reason: 'sdk correction' },
        { idempotencyKey: `sdk-adj-${sid}` },
      );
      expect(a.transaction).to.include({ kind: 'adjustment', amount: -0.5 });
      expect(a.balance.balance).to.equal(7.5);
      const again = await client.credits.adjust(
        { user_id: u.email, amount: -0.5, reason: 'sdk correction' },
        { idempotencyKey: `sdk-adj-${sid}` },
      );
      expect(again.transaction.id).to.equal(a.transaction.id);
      const r = await client.sessions.refund(sid, { reason: 'sdk refund' });
      expect(r).to.include({ session_id: sid, user_id: u.user.id, charged: 2, refunded: 2, refundable: 0 });
      expect(r.transaction).to.include({ kind: 'refund', amount: 2, session_id: sid });
      try {
        await client.sessions.refund(sid, { amount: 1, reason: 'once more' });
        expect.fail('a second refund was accepted');
      } catch (err) {
        expect(err).to.be.instanceOf(ConflictError);
        expect((err as ConflictError).code).to.equal('REFUND_EXCEEDS_CHARGE');
      }
    });

    it('verify flags refunds that exceed their session\'s charge (check "refund"), and is clean otherwise', async function () {
      this.timeout(30_000);
      const u = await buildUser(d, { tier: 'team' });
      await grant(d, u, 10);
      const sid = await chargedSession(u);
      expect((await refund(sid, { amount: 1.5, reason: 'most of it' })).status).to.equal(201);
      await expectLedgerClean(d);
      // Someone lowers the recorded charge behind the ledger's back.
      const db = d.container.database.db;
      await db.updateTable('credit_reservations').set({ charged: 1_000_000 }).where('session_id', '=', sid).execute();
      try {
        const mismatches = await d.container.ledger.verify();
        expect(mismatches.map((m) => [m.userId, m.check, m.expected, m.actual])).to.deep.equal([
          [u.user.id, 'refund', 1_000_000, 1_500_000],
        ]);
        const r = await d.api.post('/v1/admin/credits/verify', {}, { token: root });
        expect(r.body.ok).to.equal(false);
        expectShape(r, 'CreditVerifyResponse');
        expect(r.body.mismatches[0]).to.include({
          user_id: u.user.id,
          check: 'refund',
          expected: 1,
          actual: 1.5,
          unit: 'credits',
        });
      } finally {
        await db.updateTable('credit_reservations').set({ charged: 2_000_000 }).where('session_id', '=', sid).execute();
      }
      await expectLedgerClean(d);
    });
  });
});
