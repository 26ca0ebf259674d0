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
import { expectLedgerClean, grant, waitForEnd } from '../../helpers/sessions.js';

describeStorage('budgets over HTTP: keys, users, tenants, quote and execute', (backend) => {
  let d: TestDaemon;
  let admin: string;
  before(async () => {
    d = await startDaemon({
      backend,
      config: { tiers: { enterprise: { max_concurrent_sessions: 200, requests_per_hour: 100_000 } } },
    });
    admin = mintToken(d, await platformAdmin(d));
  });
  after(async () => d?.stop());

  const withKey = (key: string) => ({ apiKey: key });

  it('50 parallel executes on a key with a daily budget of 5: exactly 5 run, 45 get 402 BUDGET_EXCEEDED; verify is clean', async function () {
    this.timeout(120_000);
    const u = await buildUser(d, { tier: 'enterprise' });
    await grant(d, u, 100);
    const key = await buildApiKey(d, u, { name: 'ci', scopes: ['agents:execute', 'sessions:read'] });
    const set = await d.api.put(`/v1/api-keys/${key.id}/budget`, { amount: 5, period: 'day' }, { token: u.token });
    expect(set.status, set.text).to.equal(200);
    expect(set.body.budget).to.include({
      subject: 'api_key',
      id: key.id,
      amount: 5,
      period: 'day',
      used: 0,
      remaining: 5,
      set_by: 'owner',
    });
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        d.api.post(
          '/v1/agents/execute',
          { vision: `Budget race number ${i} [slow:4000]`, options: { costBudget: 1 } },
          withKey(key.key),
        ),
      ),
    );
    const ok = results.filter((r) => r.status === 200);
    expect(ok, JSON.stringify(results.find((r) => ![200, 402].includes(r.status))?.body ?? null)).to.have.length(5);
    for (const r of results.filter((x) => x.status !== 200)) {
      expect(r.status).to.equal(402);
      expect(r.body.error.code).to.equal('BUDGET_EXCEEDED');
      expect(r.body.error.type).to.equal('INSUFFICIENT_CREDITS');
      expect(r.body.error.details.budget).to.include({
        subject: 'api_key',
        id: key.id,
        period: 'day',
        amount: 5,
        remaining: 0,
      });
      expect(Date.parse(r.body.error.details.budget.resets_at)).to.be.greaterThan(Date.now());
    }
    for (const r of ok) await waitForEnd(d, withKey(key.key), r.body.session.id);
    // The sessions and their ledger entries name the key that spent.
    const sessions = await d.container.database.db
      .selectFrom('sessions')
      .select(['api_key_id'])
      .where('user_id', '=', u.user.id)
      .execute();
    expect(sessions.map((s) => s.api_key_id)).to.deep.equal(Array(5).fill(key.id));
    const entries = await d.container.database.db
      .selectFrom('credit_ledger')
      .select(['kind', 'api_key_id'])
      .where('user_id', '=', u.user.id)
      .where('kind', '=', 'reserve')
      .execute();
    expect(entries.map((e) => e.api_key_id)).to.deep.equal(Array(5).fill(key.id));
    const denied = (await auditRows(d)).filter((a) => a.action === 'budget.exceeded');
    expect(denied.length).to.be.at.least(45);
    await expectLedgerClean(d);
    // The same user without the key is not held back by the key's budget.
    expect(
      (
        await d.api.post(
          '/v1/agents/execute',
          { vision: 'Signed in, no key budget', options: { costBudget: 1 } },
          { token: u.token },
        )
      ).status,
    ).to.equal(200);
  });

  it('quote names the budget that would refuse, with when it resets', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 10);
    const platform = await d.api.put(
      `/v1/admin/users/${u.user.id}/budget`,
      { amount: 0.5, period: 'week' },
      { token: admin },
    );
    expect(platform.status, platform.text).to.equal(200);
    const q = await d.api.post(
      '/v1/agents/quote',
      { vision: 'What would this cost me?', options: { costBudget: 1 } },
      { token: u.token },
    );
    expect(q.status, q.text).to.equal(200);
    expect(q.body.admission.allowed).to.equal(false);
    const reason = q.body.admission.reasons.find((r: { limit: string }) => r.limit === 'budget');
    expect(reason.budget).to.include({ subject: 'user', id: u.user.id, period: 'week', amount: 0.5, remaining: 0.5 });
    expect(reason.retry_after).to.be.a('number').and.greaterThan(0);
    expect(q.body.budgets).to.have.length(1);
    const ex = await d.api.post(
      '/v1/agents/execute',
      { vision: 'Try it anyway please', options: { costBudget: 1 } },
      { token: u.token },
    );
    expect(ex.status).to.equal(402);
    expect(ex.body.error.code).to.equal('BUDGET_EXCEEDED');
    const mine = await d.api.get('/v1/budgets', { token: u.token });
    expect(mine.body.budgets.map((b: { subject: string }) => b.subject)).to.deep.equal(['user']);
  });

  it('policy: owners cap their own keys; admins within reach; tenants by platform admins; a lower role cannot lift a cap', async () => {
    const tenant = await buildTenant(d);
    const other = await buildTenant(d);
    const tadmin = await buildUser(d, { role: 'admin', tenantId: tenant });
    const member: TestUser = await buildUser(d, { tenantId: tenant });
    const stranger = await buildUser(d, { tenantId: other });
    const key = await buildApiKey(d, member, { name: 'capped' });
    // A member administers nothing.
    expect(
      (
        await d.api.put(
          `/v1/admin/users/${member.user.id}/budget`,
          { amount: 5, period: 'day' },
          { token: member.token },
        )
      ).status,
    ).to.equal(403);
    // Another user's key is not found through the owner route.
    expect(
      (await d.api.put(`/v1/api-keys/${key.id}/budget`, { amount: 5, period: 'day' }, { token: stranger.token }))
        .status,
    ).to.equal(404);
    // A tenant admin caps a member's key; the owner then cannot lift it.
    const capped = await d.api.put(
      `/v1/admin/api-keys/${key.id}/budget`,
      { amount: 2, period: 'month' },
      { token: tadmin.token },
    );
    expect(capped.status, capped.text).to.equal(200);
    expect(capped.body.budget.set_by).to.equal('tenant_admin');
    const lift = await d.api.delete(`/v1/api-keys/${key.id}/budget`, { token: member.token });
    expect(lift.status).to.equal(403);
    expect(lift.body.error.code).to.equal('FORBIDDEN');
    expect(
      (await d.api.put(`/v1/api-keys/${key.id}/budget`, { amount: 50, period: 'month' }, { token: member.token }))
        .status,
    ).to.equal(403);
    // Out of the tenant admin's reach: another tenant's user, and tenant budgets at all.
    expect(
      (
        await d.api.put(
          `/v1/admin/users/${stranger.user.id}/budget`,
          { amount: 5, period: 'day' },
          { token: tadmin.token },
        )
      ).status,
    ).to.equal(404);
    expect(
      (await d.api.put(`/v1/admin/tenants/${tenant}/budget`, { amount: 5, period: 'day' }, { token: tadmin.token }))
        .status,
    ).to.equal(403);
    const t = await d.api.put(`/v1/admin/tenants/${tenant}/budget`, { amount: 100, period: 'month' }, { token: admin });
    expect(t.status, t.text).to.equal(200);
    expect(t.body.budget).to.include({ subject: 'tenant', id: tenant, set_by: 'platform_admin' });
    // The tenant admin lists its tenant's budgets only.
    const listed = await d.api.get('/v1/admin/budgets', { token: tadmin.token });
    expect(listed.status).to.equal(200);
    expect(listed.body.budgets.map((b: { id: string }) => b.id).sort()).to.deep.equal([key.id, tenant].sort());
    const mine = await d.api.get('/v1/budgets', { token: member.token });
    expect(mine.body.budgets.map((b: { subject: string }) => b.subject).sort()).to.deep.equal(['api_key', 'tenant']);
    // The tenant admin removes the cap it set; removing again is 404.
    expect((await d.api.delete(`/v1/admin/api-keys/${key.id}/budget`, { token: tadmin.token })).status).to.equal(200);
    expect((await d.api.delete(`/v1/admin/api-keys/${key.id}/budget`, { token: tadmin.token })).status).to.equal(404);
    const actions = (await auditRows(d)).map((a) => a.action);
    expect(actions.filter((a) => a === 'budget.set').length).to.be.at.least(2);
    expect(actions).to.include('budget.remove');
  });

  it('a key is created and updated with its budget in one transaction; lists show it', async () => {
    const tenant = await buildTenant(d);
    const tadmin = await buildUser(d, { role: 'admin', tenantId: tenant });
    const u = await buildUser(d, { tenantId: tenant });
    const created = await d.api.post(
      '/v1/api-keys',
      { name: 'with budget', budget: { amount: 3, period: 'week' } },
      { token: u.token },
    );
    expect(created.status, created.text).to.equal(201);
    expect(created.body.api_key.budget).to.include({
      subject: 'api_key',
      id: created.body.api_key.id,
      amount: 3,
      period: 'week',
      set_by: 'owner',
    });
    const id = created.body.api_key.id as string;
    const listed = await d.api.get('/v1/api-keys', { token: u.token });
    expect(listed.body.api_keys.find((k: { id: string }) => k.id === id).budget).to.include({
      amount: 3,
      period: 'week',
    });
    const updated = await d.api.patch(
      `/v1/api-keys/${id}`,
      { budget: { amount: 4, period: 'day' } },
      { token: u.token },
    );
    expect(updated.status, updated.text).to.equal(200);
    expect(updated.body.api_key.budget).to.include({ amount: 4, period: 'day' });
    // The tenant admin caps it; the owner's update that would lift the cap changes nothing at all.
    const capped = await d.api.patch(
      `/v1/admin/api-keys/${id}`,
      { budget: { amount: 1, period: 'day' } },
      { token: tadmin.token },
    );
    expect(capped.status, capped.text).to.equal(200);
    expect(capped.body.api_key.budget.set_by).to.equal('tenant_admin');
    const lift = await d.api.patch(`/v1/api-keys/${id}`, { name: 'renamed', budget: null }, { token: u.token });
    expect(lift.status).to.equal(403);
    const after = await d.api.get('/v1/api-keys', { token: u.token });
    const key = after.body.api_keys.find((k: { id: string }) => k.id === id);
    expect(key.name).to.equal('with budget');
    expect(key.budget).to.include({ amount: 1, set_by: 'tenant_admin' });
    // A bad budget on creation creates no key.
    const before = (await d.api.get('/v1/api-keys', { token: u.token })).body.api_keys.length;
    expect(
      (
        await d.api.post(
          '/v1/api-keys',
          { name: 'bad budget', budget: { amount: 0, period: 'day' } },
          { token: u.token },
        )
      ).status,
    ).to.equal(400);
    expect((await d.api.get('/v1/api-keys', { token: u.token })).body.api_keys.length).to.equal(before);
    // Removing it (by the tenant admin who set it) leaves the key without one.
    const removed = await d.api.patch(`/v1/admin/api-keys/${id}`, { budget: null }, { token: tadmin.token });
    expect(removed.status, removed.text).to.equal(200);
    expect(removed.body.api_key.budget).to.equal(null);
  });

  it('bad budgets are 400 and write nothing', async () => {
    const u = await buildUser(d);
    const key = await buildApiKey(d, u);
    for (const body of [
      { amount: 0, period: 'day' },
      { amount: -1, period: 'day' },
      { amount: 5, period: 'year' },
      { amount: 5 },
      { amount: '5', period: 'day' },
      { amount: 1.1234567, period: 'day' },
      { amount: 5, period: 'day', extra: 1 },
    ]) {
      const r = await d.api.put(`/v1/api-keys/${key.id}/budget`, body, { token: u.token });
      expect(r.status, JSON.stringify(body)).to.equal(400);
      expect(r.body.error.type).to.equal('VALIDATION_ERROR');
    }
    expect(
      await d.container.database.db.selectFrom('budgets').selectAll().where('subject_id', '=', key.id).execute(),
    ).to.deep.equal([]);
    // An API key cannot cap keys (bearer only), so a leaked key cannot lift or set caps.
    const viaKey = await d.api.put(`/v1/api-keys/${key.id}/budget`, { amount: 5, period: 'day' }, { apiKey: key.key });
    expect(viaKey.status).to.equal(403);
    expect(viaKey.body.error.code).to.equal('FORBIDDEN');
  });
});
