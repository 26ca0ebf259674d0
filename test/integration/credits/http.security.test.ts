import { expect } from 'chai';
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

describeStorage('credits over HTTP: scopes and tenant isolation', (backend) => {
  let d: TestDaemon;
  let root: string;
  let tenantA: string;
  let tenantB: string;
  let adminA: TestUser;
  let inA: TestUser;
  let inB: TestUser;

  const ledgerRows = (userId: string) =>
    d.container.database.db.selectFrom('credit_ledger').selectAll().where('user_id', '=', userId).execute();

  before(async () => {
    d = await startDaemon({ backend });
    root = mintToken(d, await platformAdmin(d));
    tenantA = await buildTenant(d);
    tenantB = await buildTenant(d);
    adminA = await buildUser(d, { role: 'admin', tenantId: tenantA });
    expect(adminA.user.role).to.equal('tenant_admin');
    inA = await buildUser(d, { tenantId: tenantA });
    inB = await buildUser(d, { tenantId: tenantB });
    expect(
      (
        await d.api.post(
          '/v1/admin/credits/grant',
          { user_id: inB.user.id, amount: 5, reason: 'seed' },
          { token: root },
        )
      ).status,
    ).to.equal(201);
  });
  after(async () => d?.stop());

  it('members get 403 INSUFFICIENT_SCOPE on every admin credit endpoint, and nothing is written', async () => {
    const m = await buildUser(d);
    const key = await buildApiKey(d, m);
    for (const creds of [{ token: m.token }, { apiKey: key.key }]) {
      const calls = [
        d.api.post('/v1/admin/credits/grant', { user_id: m.user.id, amount: 100, reason: 'self-service' }, creds),
        d.api.get(`/v1/admin/credits/balance?user_id=${m.user.id}`, creds),
        d.api.get(`/v1/admin/credits/transactions?user_id=${m.user.id}`, creds),
        d.api.post('/v1/admin/credits/verify', {}, creds),
      ];
      for (const r of await Promise.all(calls)) {
        expect(r.status, r.text).to.equal(403);
        expect(r.body.error.code).to.equal('INSUFFICIENT_SCOPE');
      }
    }
    expect(await ledgerRows(m.user.id)).to.deep.equal([]);
  });

  it("a tenant admin grants to its tenant's users, from its tenant's credit pool", async () => {
    const short = await d.api.post(
      '/v1/admin/credits/grant',
      { user_id: inA.email, amount: 2, reason: 'tenant grant' },
      { token: adminA.token },
    );
    expect(short.status, short.text).to.equal(402);
    expect(
      (
        await d.api.post(
          `/v1/admin/tenants/${tenantA}/credits/grant`,
          { amount: 3, reason: 'allotment' },
          { token: root },
        )
      ).status,
    ).to.equal(201);
    const r = await d.api.post(
      '/v1/admin/credits/grant',
      { user_id: inA.email, amount: 2, reason: 'tenant grant' },
      { token: adminA.token },
    );
    expect(r.status, r.text).to.equal(201);
    expect(r.body.balance.balance).to.equal(2);
    expect(r.body.pool).to.include({ tenant_id: tenantA, balance: 1 });
    const row = (await auditRows(d)).find((a) => a.action === 'credits.pool_transfer' && a.target_id === inA.user.id);
    expect(row).to.include({ actor_type: 'admin', actor_id: adminA.user.id, tenant_id: tenantA });
    const b = await d.api.get(`/v1/admin/credits/balance?user_id=${inA.user.id}`, { token: adminA.token });
    expect(b.body).to.include({ user_id: inA.user.id, balance: 2 });
    expect(
      (await d.api.get(`/v1/admin/credits/transactions?user_id=${inA.email}`, { token: adminA.token })).body
        .transactions,
    ).to.have.length(1);
  });

  it("another tenant's user answers 404 exactly like a missing one, and nothing is written", async () => {
    const missing = await d.api.post(
      '/v1/admin/credits/grant',
      { user_id: 'usr_00000000000000000000000000', amount: 1000, reason: 'probe' },
      { token: adminA.token },
    );
    expect(missing.status).to.equal(404);
    for (const who of [inB.user.id, inB.email]) {
      const r = await d.api.post(
        '/v1/admin/credits/grant',
        { user_id: who, amount: 1000, reason: 'cross-tenant' },
        { token: adminA.token, headers: { 'idempotency-key': `x-${who}` } },
      );
      expect(r.status, r.text).to.equal(404);
      expect(r.body.error).to.deep.equal(missing.body.error);
      expect(
        (await d.api.get(`/v1/admin/credits/balance?user_id=${encodeURIComponent(who)}`, { token: adminA.token }))
          .status,
      ).to.equal(404);
      expect(
        (await d.api.get(`/v1/admin/credits/transactions?user_id=${encodeURIComponent(who)}`, { token: adminA.token }))
          .status,
      ).to.equal(404);
    }
    expect(await ledgerRows(inB.user.id)).to.have.length(1);
    expect(
      (await d.api.get(`/v1/admin/credits/balance?user_id=${inB.user.id}`, { token: root })).body.balance,
    ).to.equal(5);
    expect(
      (await auditRows(d)).filter((a) => a.action === 'access.not_found' && a.actor_id === adminA.user.id).length,
    ).to.be.at.least(2);
    expect(
      await d.container.database.db
        .selectFrom('idempotency_keys')
        .selectAll()
        .where('user_id', '=', adminA.user.id)
        .where('key', 'like', 'x-%')
        .execute(),
    ).to.deep.equal([]);
  });

  it('verify is for platform admins: a tenant admin gets 403 FORBIDDEN', async () => {
    const r = await d.api.post('/v1/admin/credits/verify', {}, { token: adminA.token });
    expect(r.status).to.equal(403);
    expect(r.body.error.code).to.equal('FORBIDDEN');
    expect((await d.api.post('/v1/admin/credits/verify', {}, { token: root })).body.ok).to.equal(true);
  });

  it("a user's own endpoints never show another user's ledger", async () => {
    const t = await d.api.get('/v1/credits/transactions', { token: inA.token });
    expect(t.body.transactions.map((e: { reason: string }) => e.reason)).to.deep.equal(['tenant grant']);
    // A user id in the query is not a way in: the own endpoints read the credential's user.
    expect((await d.api.get(`/v1/credits/balance?user_id=${inB.user.id}`, { token: inA.token })).body.balance).to.equal(
      2,
    );
    expect((await d.api.get('/v1/credits/balance', { token: inB.token })).body.balance).to.equal(5);
  });
});
