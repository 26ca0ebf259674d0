import { expect } from 'chai';
import { sql } from 'kysely';
import { schemaId } from '../../../daemon/http/validation.js';
import { newId } from '../../../daemon/ids.js';
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

const ajv = createAjv();

function expectShape(r: ApiResponse, schema: string): void {
  const validate = ajv.getSchema(schemaId(schema))!;
  expect(validate(r.body), `${schema}: ${JSON.stringify(validate.errors)}\n${r.text}`).to.equal(true);
}

describeStorage('tenant credit pools over HTTP', (backend) => {
  let d: TestDaemon;
  let root: string;
  let tenantA: string;
  let tenantB: string;
  let adminA: TestUser;
  let adminB: TestUser;
  let memberA: TestUser;
  let memberB: TestUser;

  const poolGrant = (tenantId: string, body: unknown, options: { token?: string; key?: string } = {}) =>
    d.api.post(`/v1/admin/tenants/${tenantId}/credits/grant`, body, {
      token: options.token ?? root,
      headers: options.key ? { 'idempotency-key': options.key } : {},
    });
  const grant = (body: unknown, token: string, key?: string) =>
    d.api.post('/v1/admin/credits/grant', body, { token, headers: key ? { 'idempotency-key': key } : {} });
  const poolRows = (tenantId: string) =>
    d.container.database.db
      .selectFrom('credit_pool_ledger')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .orderBy('seq')
      .execute();
  const memberRows = (userId: string) =>
    d.container.database.db
      .selectFrom('credit_ledger')
      .selectAll()
      .where('user_id', '=', userId)
      .orderBy('seq')
      .execute();

  before(async () => {
    d = await startDaemon({ backend });
    root = mintToken(d, await platformAdmin(d));
    tenantA = await buildTenant(d);
    tenantB = await buildTenant(d);
    adminA = await buildUser(d, { role: 'admin', tenantId: tenantA });
    adminB = await buildUser(d, { role: 'admin', tenantId: tenantB });
    memberA = await buildUser(d, { tenantId: tenantA });
    memberB = await buildUser(d, { tenantId: tenantB });
  });
  after(async () => d?.stop());

  it('the platform grants 10 into a pool; its tenant admin reads it', async () => {
    const r = await poolGrant(tenantA, { amount: 10, reason: 'Q3 allotment' });
    expect(r.status, r.text).to.equal(201);
    expectShape(r, 'TenantCreditGrantResponse');
    expect(r.body.transaction).to.include({
      kind: 'grant',
      amount: 10,
      balance_after: 10,
      reason: 'Q3 allotment',
      user_id: null,
      transaction_id: null,
    });
    expect(r.body.pool).to.include({ tenant_id: tenantA, balance: 10 });
    const audit = (await auditRows(d)).find((a) => a.action === 'credits.pool_grant' && a.target_id === tenantA);
    expect(audit).to.include({ outcome: 'success', actor_type: 'admin', tenant_id: tenantA, target_type: 'tenant' });

    for (const token of [root, adminA.token]) {
      const g = await d.api.get(`/v1/admin/tenants/${tenantA}/credits`, { token });
      expect(g.status, g.text).to.equal(200);
      expectShape(g, 'TenantCreditPoolResponse');
      expect(g.body.pool).to.include({ tenant_id: tenantA, balance: 10 });
      expect(g.body.entries.map((e: { kind: string }) => e.kind)).to.deep.equal(['grant']);
    }
  });

  it('a tenant admin grants 4 to a member: pool 6, member 4, one transaction, audited as credits.pool_transfer', async () => {
    const r = await grant({ user_id: memberA.email, amount: 4, reason: 'sprint budget' }, adminA.token);
    expect(r.status, r.text).to.equal(201);
    expectShape(r, 'CreditGrantResponse');
    expect(r.body.transaction).to.include({ kind: 'grant', amount: 4, balance_after: 4, reason: 'sprint budget' });
    expect(r.body.balance).to.deep.equal({ balance: 4, reserved: 0, available: 4 });
    expect(r.body.pool).to.include({ tenant_id: tenantA, balance: 6 });

    const rows = await poolRows(tenantA);
    expect(rows.map((e) => [e.kind, Number(e.amount), Number(e.balance_after)])).to.deep.equal([
      ['grant', 10_000_000, 10_000_000],
      ['transfer', -4_000_000, 6_000_000],
    ]);
    const [memberEntry] = await memberRows(memberA.user.id);
    expect(memberEntry).to.include({ id: r.body.transaction.id, pool_entry_id: rows[1]!.id });
    expect(rows[1]).to.include({
      transfer_entry_id: memberEntry!.id,
      user_id: memberA.user.id,
      actor_id: adminA.user.id,
    });

    const audit = (await auditRows(d)).find(
      (a) => a.action === 'credits.pool_transfer' && a.target_id === memberA.user.id,
    );
    expect(audit).to.include({ outcome: 'success', actor_type: 'admin', actor_id: adminA.user.id, tenant_id: tenantA });
    expect(JSON.parse(String(audit!.details))).to.include({
      amount: 4,
      entry_id: memberEntry!.id,
      pool_entry_id: rows[1]!.id,
      pool_balance: 6,
    });
    // Not a mint: no credits.grant for it.
    expect(
      (await auditRows(d)).filter((a) => a.action === 'credits.grant' && a.target_id === memberA.user.id),
    ).to.deep.equal([]);

    const g = await d.api.get(`/v1/admin/tenants/${tenantA}/credits?limit=1`, { token: adminA.token });
    expect(g.body.entries).to.have.length(1);
    expect(g.body.entries[0]).to.include({
      kind: 'transfer',
      amount: -4,
      balance_after: 6,
      user_id: memberA.user.id,
      transaction_id: memberEntry!.id,
    });
    expect(g.body.next_cursor).to.be.a('string');
    const older = await d.api.get(`/v1/admin/tenants/${tenantA}/credits?cursor=${g.body.next_cursor}`, {
      token: adminA.token,
    });
    expect(older.body.entries.map((e: { kind: string }) => e.kind)).to.deep.equal(['grant']);
  });

  it('a tenant admin granting 7 from a pool of 6 gets 402 naming the pool, and nothing is written (not even the key)', async () => {
    const before = {
      pool: await poolRows(tenantA),
      member: await memberRows(memberA.user.id),
      audit: (await auditRows(d)).length,
    };
    const r = await grant({ user_id: memberA.user.id, amount: 7, reason: 'too much' }, adminA.token, 'pool-short-1');
    expect(r.status, r.text).to.equal(402);
    expect(r.body.error.code).to.equal('INSUFFICIENT_CREDITS');
    expect(r.body.error.message).to.include('pool').and.include(tenantA);
    expect(r.body.error.details).to.deep.equal({ pool: tenantA, required: 7, available: 6, shortfall: 1 });
    expect(await poolRows(tenantA)).to.deep.equal(before.pool);
    expect(await memberRows(memberA.user.id)).to.deep.equal(before.member);
    expect((await auditRows(d)).length).to.equal(before.audit);
    expect(
      await d.container.database.db
        .selectFrom('idempotency_keys')
        .selectAll()
        .where('user_id', '=', adminA.user.id)
        .where('key', '=', 'pool-short-1')
        .execute(),
    ).to.deep.equal([]);
  });

  it('a tenant admin cannot grant to itself: 403 FORBIDDEN, nothing written', async () => {
    for (const who of [adminA.user.id, adminA.email]) {
      const r = await grant({ user_id: who, amount: 1, reason: 'for me' }, adminA.token);
      expect(r.status, r.text).to.equal(403);
      expect(r.body.error.code).to.equal('FORBIDDEN');
    }
    expect(await memberRows(adminA.user.id)).to.deep.equal([]);
    expect((await d.api.get(`/v1/admin/tenants/${tenantA}/credits`, { token: root })).body.pool.balance).to.equal(6);
  });

  it('a tenant admin may grant to another admin of its tenant (from the pool) but never mints: an empty pool is 402', async () => {
    const other = await buildUser(d, { role: 'admin', tenantId: tenantA });
    const r = await grant({ user_id: other.user.id, amount: 1, reason: 'co-admin' }, adminA.token);
    expect(r.status, r.text).to.equal(201);
    expect(r.body.pool.balance).to.equal(5);
    const empty = await grant({ user_id: memberB.user.id, amount: 1, reason: 'nothing in B' }, adminB.token);
    expect(empty.status, empty.text).to.equal(402);
    expect(empty.body.error.details).to.deep.equal({ pool: tenantB, required: 1, available: 0, shortfall: 1 });
  });

  it('a platform admin still mints to anyone, without touching pools', async () => {
    const before = await poolRows(tenantA);
    const r = await grant({ user_id: memberA.user.id, amount: 100, reason: 'platform mint' }, root);
    expect(r.status, r.text).to.equal(201);
    expect(r.body.pool).to.equal(undefined);
    expect(r.body.balance.balance).to.equal(104);
    expect(await poolRows(tenantA)).to.deep.equal(before);
  });

  it("tenant B's admin cannot see or use tenant A's pool: 404 like a tenant that does not exist", async () => {
    const missing = newId('ten');
    const ghost = await d.api.get(`/v1/admin/tenants/${missing}/credits`, { token: adminB.token });
    expect(ghost.status).to.equal(404);
    const seen = await d.api.get(`/v1/admin/tenants/${tenantA}/credits`, { token: adminB.token });
    expect(seen.status, seen.text).to.equal(404);
    expect(seen.body.error).to.deep.equal(ghost.body.error);
    const used = await poolGrant(tenantA, { amount: 1, reason: 'cross' }, { token: adminB.token, key: 'cross-pool' });
    expect(used.status, used.text).to.equal(404);
    expect(used.body.error).to.deep.equal(ghost.body.error);
    // Drawing on A's pool means granting to A's members: they are not found either.
    const draw = await grant({ user_id: memberA.user.id, amount: 1, reason: 'cross' }, adminB.token);
    expect(draw.status).to.equal(404);
    const list = await d.api.get('/v1/admin/credits/pools', { token: adminB.token });
    expect(list.status, list.text).to.equal(200);
    expect(list.body.pools.map((p: { tenant_id: string }) => p.tenant_id)).to.deep.equal([]);
    expect((await d.api.get(`/v1/admin/tenants/${tenantA}/credits`, { token: root })).body.pool.balance).to.equal(5);
    expect(
      (await auditRows(d)).filter(
        (a) => a.action === 'access.not_found' && a.actor_id === adminB.user.id && a.target_type === 'tenant',
      ).length,
    ).to.be.at.least(2);
    expect(
      await d.container.database.db
        .selectFrom('idempotency_keys')
        .selectAll()
        .where('user_id', '=', adminB.user.id)
        .execute(),
    ).to.deep.equal([]);
  });

  it('a tenant admin cannot grant into its own pool (403), and members have no access (403 INSUFFICIENT_SCOPE)', async () => {
    const own = await poolGrant(tenantA, { amount: 1000, reason: 'self-service' }, { token: adminA.token });
    expect(own.status, own.text).to.equal(403);
    expect(own.body.error.code).to.equal('FORBIDDEN');
    const key = await buildApiKey(d, memberA);
    for (const creds of [{ token: memberA.token }, { apiKey: key.key }]) {
      for (const r of await Promise.all([
        d.api.post(`/v1/admin/tenants/${tenantA}/credits/grant`, { amount: 1, reason: 'x' }, creds),
        d.api.get(`/v1/admin/tenants/${tenantA}/credits`, creds),
        d.api.get('/v1/admin/credits/pools', creds),
      ])) {
        expect(r.status, r.text).to.equal(403);
        expect(r.body.error.code).to.equal('INSUFFICIENT_SCOPE');
      }
    }
    // An admin's API key without the admin scope acts as a member.
    const narrow = await buildApiKey(d, adminA, { scopes: ['credits:read'] });
    expect(
      (
        await d.api.post(
          '/v1/admin/credits/grant',
          { user_id: memberA.user.id, amount: 1, reason: 'x' },
          { apiKey: narrow.key },
        )
      ).status,
    ).to.equal(403);
    expect((await poolRows(tenantA)).length).to.equal(3);
  });

  it('platform: an unknown tenant is 404; bad amounts are 400 and write nothing', async () => {
    expect((await poolGrant(newId('ten'), { amount: 1, reason: 'ghost' })).status).to.equal(404);
    expect((await poolGrant('not-a-tenant', { amount: 1, reason: 'ghost' })).status).to.equal(404);
    for (const amount of [0, -1, '5', 0.0000001, 1e10]) {
      const r = await poolGrant(tenantB, { amount, reason: 'bad' });
      expect(r.status, `${amount}: ${r.text}`).to.equal(400);
    }
    expect((await poolGrant(tenantB, { amount: 1, reason: 'x', user_id: memberB.user.id })).status).to.equal(400);
    expect(
      await d.container.database.db.selectFrom('credit_pools').selectAll().where('tenant_id', '=', tenantB).execute(),
    ).to.deep.equal([]);
  });

  it('an idempotent pool grant: a retry answers the first (Idempotent-Replayed), another body is 409', async () => {
    const body = { amount: 2.5, reason: 'retry me' };
    const first = await poolGrant(tenantB, body, { key: 'pool-idem-1' });
    expect(first.status, first.text).to.equal(201);
    const again = await poolGrant(tenantB, body, { key: 'pool-idem-1' });
    expect(again.status).to.equal(201);
    expect(again.headers.get('idempotent-replayed')).to.equal('true');
    expect(again.body).to.deep.equal(first.body);
    expect(await poolRows(tenantB)).to.have.length(1);
    const other = await poolGrant(tenantB, { amount: 3, reason: 'retry me' }, { key: 'pool-idem-1' });
    expect(other.status).to.equal(409);
    expect(other.body.error.code).to.equal('IDEMPOTENCY_KEY_REUSED');
    // The same key for another tenant's pool is another request, refused the same way.
    expect((await poolGrant(tenantA, body, { key: 'pool-idem-1' })).status).to.equal(409);
    // Once the stored response is gone, the pool's own key still answers the first grant.
    await d.container.database.db.deleteFrom('idempotency_keys').where('key', '=', 'pool-idem-1').execute();
    const late = await poolGrant(tenantB, body, { key: 'pool-idem-1' });
    expect(late.status).to.equal(201);
    expect(late.headers.get('idempotent-replayed')).to.equal('true');
    expect(late.body.transaction.id).to.equal(first.body.transaction.id);
    expect(await poolRows(tenantB)).to.have.length(1);
  });

  it('an idempotent tenant-admin grant lands once', async () => {
    const body = { user_id: memberB.user.id, amount: 1, reason: 'once' };
    const first = await grant(body, adminB.token, 'xfer-idem-1');
    expect(first.status, first.text).to.equal(201);
    const again = await grant(body, adminB.token, 'xfer-idem-1');
    expect(again.status).to.equal(201);
    expect(again.headers.get('idempotent-replayed')).to.equal('true');
    expect(again.body).to.deep.equal(first.body);
    expect((await poolRows(tenantB)).filter((e) => e.kind === 'transfer')).to.have.length(1);
  });

  it('GET /v1/admin/credits/pools: the platform sees every pool, a tenant admin its own', async () => {
    const all = await d.api.get('/v1/admin/credits/pools', { token: root });
    expect(all.status, all.text).to.equal(200);
    expectShape(all, 'CreditPoolListResponse');
    const ids = all.body.pools.map((p: { tenant_id: string }) => p.tenant_id);
    expect(ids).to.include.members([tenantA, tenantB]);
    const own = await d.api.get('/v1/admin/credits/pools', { token: adminA.token });
    expect(own.body.pools).to.have.length(1);
    expect(own.body.pools[0]).to.include({ tenant_id: tenantA, balance: 5 });
    const page = await d.api.get('/v1/admin/credits/pools?limit=1', { token: root });
    expect(page.body.pools).to.have.length(1);
    expect(page.body.next_cursor).to.be.a('string');
  });

  describe('verify (last: it tampers with a pool)', () => {
    it('is clean, pools included', async () => {
      const r = await d.api.post('/v1/admin/credits/verify', {}, { token: root });
      expect(r.status, r.text).to.equal(200);
      expect(r.body).to.deep.equal({ success: true, ok: true, mismatches: [] });
    });

    it('reports a tampered pool entry by tenant, in credits', async () => {
      const [entry] = await poolRows(tenantA);
      await sql`UPDATE credit_pool_ledger SET amount = amount + 500000 WHERE id = ${entry!.id}`.execute(
        d.container.database.db,
      );
      try {
        const r = await d.api.post('/v1/admin/credits/verify', {}, { token: root });
        expect(r.status).to.equal(200);
        expectShape(r, 'CreditVerifyResponse');
        expect(r.body.ok).to.equal(false);
        expect(
          r.body.mismatches.every(
            (m: { account?: string; tenant_id?: string }) => m.account === 'pool' && m.tenant_id === tenantA,
          ),
        ).to.equal(true);
        expect(r.body.mismatches).to.deep.include({
          account: 'pool',
          tenant_id: tenantA,
          check: 'balance',
          expected: 5.5,
          actual: 5,
          unit: 'credits',
          message: 'pool balance differs from the sum of its entries',
        });
        expect(r.body.mismatches.find((m: { check: string }) => m.check === 'chain')).to.include({
          entry_id: entry!.id,
        });
      } finally {
        await sql`UPDATE credit_pool_ledger SET amount = amount - 500000 WHERE id = ${entry!.id}`.execute(
          d.container.database.db,
        );
      }
      expect((await d.api.post('/v1/admin/credits/verify', {}, { token: root })).body.ok).to.equal(true);
    });
  });
});
