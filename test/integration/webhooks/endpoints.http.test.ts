import { expect } from 'chai';
import { Webhook } from 'standardwebhooks';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { auditRows, buildApiKey, buildTenant, buildUser, mintToken, platformAdmin } from '../../helpers/factories.js';
import { execute, grant, waitForEnd } from '../../helpers/sessions.js';
import { Receiver } from './support.js';

describeStorage('webhook endpoints over HTTP: events, fresh payloads, policy', (backend) => {
  let d: TestDaemon;
  let receiver: Receiver;
  before(async () => {
    d = await startDaemon({ backend, config: { webhooks: { allow_private_targets: true } } });
    receiver = await Receiver.start((_req, res) => res.end('ok'));
  });
  after(async () => {
    await receiver?.close();
    await d?.stop();
  });

  const messages = (path: string) =>
    receiver.received.filter((r) => r.path === path).map((r) => ({ ...r, json: JSON.parse(r.body) }));

  it('session.started and the final event carry the session exactly as GET /v1/sessions/:id shows it (usage, phase, cost, last_seq)', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 10);
    const created = await d.api.post(
      '/v1/webhooks/endpoints',
      { url: receiver.url('/fresh'), event_types: ['session.started', 'session.completed'], description: 'ci' },
      { token: u.token },
    );
    expect(created.status, created.text).to.equal(201);
    const secret = created.body.secret as string;
    expect(created.body.endpoint).to.include({ url: receiver.url('/fresh'), enabled: true, description: 'ci' });
    // The secret is in the creation answer only.
    const read = await d.api.get(`/v1/webhooks/endpoints/${created.body.endpoint.id}`, { token: u.token });
    expect(read.text).not.to.include(secret.slice(6));
    const r = await execute(d, u, 'Do some work and report usage [iterations:3]', { costBudget: 2 });
    expect(r.status, r.text).to.equal(200);
    await waitForEnd(d, u, r.body.session.id);
    await d.container.webhooks.deliverDueNow();
    // Deliveries are not ordered (several go out at once): sort by the event's own timestamp.
    const got = messages('/fresh').sort(
      (a, b) =>
        Date.parse(a.json.timestamp) - Date.parse(b.json.timestamp) || (a.json.type === 'session.started' ? -1 : 1),
    );
    expect(got.map((m) => m.json.type)).to.deep.equal(['session.started', 'session.completed']);
    for (const m of got)
      new Webhook(secret).verify(m.body, {
        'webhook-id': String(m.headers['webhook-id']),
        'webhook-timestamp': String(m.headers['webhook-timestamp']),
        'webhook-signature': String(m.headers['webhook-signature']),
      });
    const session = (await d.api.get(`/v1/sessions/${r.body.session.id}`, { token: u.token })).body.session;
    const final = got[1]!.json.data;
    expect(final).to.deep.equal(session);
    expect(final.final_cost).to.be.greaterThan(0);
    expect(final.usage.input_tokens).to.be.greaterThan(0);
    expect(final.last_seq).to.be.greaterThan(0);
    expect(got[0]!.json.data).to.include({ id: session.id, status: 'running' });
    // The delivery log over HTTP.
    const log = await d.api.get(`/v1/webhooks/endpoints/${created.body.endpoint.id}/deliveries`, { token: u.token });
    expect(log.status, log.text).to.equal(200);
    expect(
      log.body.deliveries.map((x: { event_type: string; status: string }) => `${x.event_type}:${x.status}`),
    ).to.deep.equal(['session.completed:delivered', 'session.started:delivered']);
    expect(log.body.deliveries[0].attempt_log[0]).to.include({
      attempt: 1,
      status_code: 200,
      outcome: 'delivered',
      response_excerpt: 'ok',
    });
  });

  it('credits.low_balance when a charge crosses the endpoint’s threshold; budget.threshold to the owner', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 1.05);
    const ep = await d.api.post(
      '/v1/webhooks/endpoints',
      {
        url: receiver.url('/money'),
        event_types: ['credits.low_balance', 'budget.threshold'],
        low_balance_threshold: 1,
      },
      { token: u.token },
    );
    expect(ep.status, ep.text).to.equal(201);
    const key = await buildApiKey(d, u, { name: 'capped', budget: { amount: 1.2, period: 'day' } });
    const r = await d.api.post(
      '/v1/agents/execute',
      { vision: 'Spend a little [iterations:3]', options: { costBudget: 1 } },
      { apiKey: key.key },
    );
    expect(r.status, r.text).to.equal(200);
    await waitForEnd(d, { apiKey: key.key }, r.body.session.id);
    await d.container.webhooks.deliverDueNow();
    const got = messages('/money').map((m) => m.json);
    const budget = got.find((m) => m.type === 'budget.threshold');
    expect(budget.data).to.deep.include({ threshold: 80 });
    expect(budget.data.budget).to.include({ subject: 'api_key', id: key.id });
    const low = got.find((m) => m.type === 'credits.low_balance');
    expect(low.data).to.include({ user_id: u.user.id, threshold: 1, session_id: r.body.session.id });
    expect(low.data.balance).to.be.below(1);
  });

  it('api_key.expiring once, 7 days ahead', async () => {
    const u = await buildUser(d);
    await d.api.post(
      '/v1/webhooks/endpoints',
      { url: receiver.url('/expiring'), event_types: ['api_key.expiring'] },
      { token: u.token },
    );
    const soon = await buildApiKey(d, u, {
      name: 'soon',
      expires_at: new Date(Date.now() + 3 * 86_400_000).toISOString(),
    });
    await buildApiKey(d, u, { name: 'later', expires_at: new Date(Date.now() + 30 * 86_400_000).toISOString() });
    await d.container.keyExpiry.runOnce();
    await d.container.keyExpiry.runOnce();
    await d.container.webhooks.deliverDueNow();
    const got = messages('/expiring').map((m) => m.json);
    expect(got.map((m) => m.data.api_key.id)).to.deep.equal([soon.id]);
  });

  it('policy: your own endpoints; admins within reach; members cannot list everyone; API keys need keys:manage', async () => {
    const tenant = await buildTenant(d);
    const tadmin = await buildUser(d, { role: 'admin', tenantId: tenant });
    const member = await buildUser(d, { tenantId: tenant });
    const outsider = await buildUser(d);
    const mine = await d.api.post(
      '/v1/webhooks/endpoints',
      { url: receiver.url('/policy'), event_types: ['*'] },
      { token: member.token },
    );
    const id = mine.body.endpoint.id as string;
    expect((await d.api.get(`/v1/webhooks/endpoints/${id}`, { token: outsider.token })).status).to.equal(404);
    expect((await d.api.delete(`/v1/webhooks/endpoints/${id}`, { token: outsider.token })).status).to.equal(404);
    expect(
      (await d.api.post(`/v1/webhooks/endpoints/${id}/rotate-secret`, {}, { token: outsider.token })).status,
    ).to.equal(404);
    expect((await d.api.get(`/v1/webhooks/endpoints/${id}`, { token: tadmin.token })).status).to.equal(200);
    const listed = await d.api.get('/v1/admin/webhooks/endpoints', { token: tadmin.token });
    expect(listed.body.endpoints.map((e: { id: string }) => e.id)).to.include(id);
    expect((await d.api.get('/v1/admin/webhooks/endpoints', { token: member.token })).status).to.equal(403);
    const platform = mintToken(d, await platformAdmin(d));
    expect(
      (
        await d.api.get(`/v1/admin/webhooks/endpoints?user_id=${encodeURIComponent(member.email)}`, { token: platform })
      ).body.endpoints.map((e: { id: string }) => e.id),
    ).to.deep.equal([id]);
    const readOnly = await buildApiKey(d, member, { scopes: ['sessions:read'] });
    expect((await d.api.get('/v1/webhooks/endpoints', { apiKey: readOnly.key })).status).to.equal(403);
    const upd = await d.api.patch(
      `/v1/webhooks/endpoints/${id}`,
      { event_types: ['ping'], enabled: false },
      { token: member.token },
    );
    expect(upd.status, upd.text).to.equal(200);
    expect(upd.body.endpoint).to.include({ enabled: false });
    expect((await d.api.post(`/v1/webhooks/endpoints/${id}/ping`, {}, { token: member.token })).status).to.equal(409);
    expect((await d.api.delete(`/v1/webhooks/endpoints/${id}`, { token: member.token })).status).to.equal(200);
    expect((await d.api.get(`/v1/webhooks/endpoints/${id}`, { token: member.token })).status).to.equal(404);
    const actions = (await auditRows(d)).map((a) => a.action);
    expect(actions).to.include.members([
      'webhook.endpoint_create',
      'webhook.endpoint_update',
      'webhook.endpoint_delete',
    ]);
    const types = await d.api.get('/v1/webhooks/event-types', { token: member.token });
    expect(types.body.event_types.map((t: { type: string }) => t.type)).to.include.members([
      'session.started',
      'credits.low_balance',
      'budget.threshold',
      'api_key.expiring',
      'ping',
    ]);
  });
});

describeStorage('webhook endpoints refuse private targets by default', (backend) => {
  it('400 on url for loopback, private, link-local and non-https targets; nothing written', async () => {
    const d = await startDaemon({ backend, config: { webhooks: { allow_private_targets: false } } });
    try {
      const u = await buildUser(d);
      for (const url of [
        'http://hooks.example.com/x',
        'https://127.0.0.1/x',
        'https://192.168.1.1/x',
        'https://169.254.169.254/latest/meta-data',
        'https://[fe80::1]/x',
        'https://2130706433/x',
      ]) {
        const r = await d.api.post('/v1/webhooks/endpoints', { url, event_types: ['*'] }, { token: u.token });
        expect(r.status, url).to.equal(400);
        expect(
          r.body.error.details.map((x: { field: string }) => x.field),
          url,
        ).to.include('url');
      }
      expect((await d.api.get('/v1/webhooks/endpoints', { token: u.token })).body.endpoints).to.deep.equal([]);
    } finally {
      await d.stop();
    }
  });
});
