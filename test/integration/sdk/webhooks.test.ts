import { expect } from 'chai';
import {
  ConflictError,
  NotFoundError,
  ValidationError,
  verifyWebhook,
  WebhookVerificationError,
  type KeenClient,
} from '../../../sdk/src/index.js';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildUser, mintToken, platformAdmin } from '../../helpers/factories.js';
import { webhookReceiver, type ReceivedWebhook } from '../../helpers/webhooks.js';
import { scriptedServer, sdk } from './support.js';

type Receiver = Awaited<ReturnType<typeof webhookReceiver>>;

const headersOf = (got: ReceivedWebhook) => got.headers as Record<string, string | string[] | undefined>;

async function rejects(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => expect.fail('expected a rejection'),
    (e: unknown) => e,
  );
}

describeStorage('SDK: registered webhook endpoints, verifyWebhook on what they receive', (backend) => {
  let d: TestDaemon;
  let hook: Receiver;
  let client: KeenClient;

  /** Runs delivery passes until the receiver holds `n` messages (the worker is stopped: the test drives it). */
  async function received(n: number): Promise<ReceivedWebhook> {
    for (let i = 0; i < 100 && hook.received.length < n; i++) {
      await d.container.webhooks.deliverDueNow();
      if (hook.received.length < n) await new Promise((r) => setTimeout(r, 20));
    }
    expect(hook.received).to.have.length(n);
    return hook.received[n - 1]!;
  }

  before(async () => {
    d = await startDaemon({ backend, config: { webhooks: { allow_private_targets: true } } });
    // The test sends the deliveries itself, so a delivery stays pending as long as it wants.
    await d.container.webhooks.stop();
    hook = await webhookReceiver();
    client = sdk(d, { accessToken: (await buildUser(d)).token });
  });
  after(async () => {
    await hook?.close();
    await d?.stop();
  });

  it('lists the event types with their schemas', async () => {
    const r = await client.webhooks.eventTypes();
    const types = r.event_types.map((t) => t.type);
    expect(types).to.include.members([
      'session.started',
      'session.completed',
      'credits.low_balance',
      'budget.threshold',
      'api_key.expiring',
      'ping',
    ]);
    expect(r.event_types.find((t) => t.type === 'ping')!.schema).to.equal('WebhookPingEvent');
  });

  it('creates an endpoint, pings it, and the message verifies with the returned secret; deliveries, resend, rotation', async () => {
    const created = await client.webhooks.create({
      url: hook.url,
      event_types: ['session.completed'],
      description: 'sdk test',
    });
    expect(created.secret).to.match(/^whsec_/);
    const ep = created.endpoint;
    expect(ep).to.include({ url: hook.url, enabled: true, description: 'sdk test', disabled_reason: null });
    expect(ep.event_types).to.deep.equal(['session.completed']);
    expect(await client.webhooks.get(ep.id)).to.deep.equal(ep);

    // Ping: delivered, signed with the endpoint's secret.
    const ping = await client.webhooks.ping(ep.id);
    expect(ping).to.include({ endpoint_id: ep.id, event_type: 'ping', status: 'pending' });
    const got = await received(1);
    expect(got.headers['webhook-id']).to.equal(ping.id);
    const message = await verifyWebhook(got.body, headersOf(got), created.secret);
    expect(message).to.include({ id: ping.id, type: 'ping' });
    expect(message.data).to.include({ endpoint_id: ep.id });
    // Another secret does not verify it.
    const other = await client.webhooks.create({ url: hook.url, event_types: ['*'] });
    expect(await rejects(verifyWebhook(got.body, headersOf(got), other.secret))).to.be.instanceOf(
      WebhookVerificationError,
    );
    await client.webhooks.delete(other.endpoint.id);

    // The delivery log.
    const page = await client.webhooks.deliveries(ep.id);
    expect(page.deliveries.map((x) => x.id)).to.deep.equal([ping.id]);
    const delivered = page.deliveries[0]!;
    expect(delivered).to.include({ status: 'delivered', attempts: 1, last_status_code: 204 });
    expect(delivered.payload).to.deep.equal(JSON.parse(got.body));
    expect(delivered.attempt_log).to.have.length(1);
    expect(delivered.attempt_log[0]).to.include({ attempt: 1, status_code: 204, outcome: 'delivered' });
    expect(await client.webhooks.delivery(ep.id, ping.id)).to.deep.equal(delivered);
    expect((await client.webhooks.deliveries(ep.id, { status: 'failed' })).deliveries).to.deep.equal([]);

    // Resend: same id; refused while it is pending.
    const again = await client.webhooks.resend(ep.id, ping.id);
    expect(again).to.include({ id: ping.id, status: 'pending' });
    expect(await rejects(client.webhooks.resend(ep.id, ping.id)))
      .to.be.instanceOf(ConflictError)
      .and.include({ code: 'INVALID_STATE' });
    const resent = await received(2);
    expect(resent.headers['webhook-id']).to.equal(ping.id);
    expect(resent.body).to.equal(got.body);
    expect((await verifyWebhook(resent.body, headersOf(resent), created.secret)).id).to.equal(ping.id);
    expect((await client.webhooks.delivery(ep.id, ping.id)).attempt_log).to.have.length(2);

    // Rotation with overlap: two signatures, each secret verifies alone.
    const rotated = await client.webhooks.rotateSecret(ep.id, { graceSeconds: 3600 });
    expect(rotated.secret)
      .to.match(/^whsec_/)
      .and.not.equal(created.secret);
    expect(rotated.endpoint.previous_secret_expires_at).to.be.a('string');
    const ping2 = await client.webhooks.ping(ep.id);
    const got2 = await received(3);
    expect(String(got2.headers['webhook-signature']).split(' ')).to.have.length(2);
    expect((await verifyWebhook(got2.body, headersOf(got2), rotated.secret)).id).to.equal(ping2.id);
    expect((await verifyWebhook(got2.body, headersOf(got2), created.secret)).id).to.equal(ping2.id);
    expect((await verifyWebhook(got2.body, headersOf(got2), [rotated.secret, created.secret])).id).to.equal(ping2.id);

    // Pages of deliveries, newest first.
    const all = [];
    for await (const x of client.webhooks.allDeliveries(ep.id, { limit: 1 })) all.push(x.id);
    expect(all).to.deep.equal([ping2.id, ping.id]);
  });

  it('update disables and re-enables; a disabled endpoint refuses a ping; delete makes it 404', async () => {
    const { endpoint } = await client.webhooks.create({ url: hook.url, event_types: ['*'] });
    const off = await client.webhooks.update(endpoint.id, { enabled: false });
    expect(off.enabled).to.equal(false);
    expect(await rejects(client.webhooks.ping(endpoint.id)))
      .to.be.instanceOf(ConflictError)
      .and.include({ code: 'INVALID_STATE' });
    const on = await client.webhooks.update(endpoint.id, {
      enabled: true,
      event_types: ['session.failed', 'credits.low_balance'],
      low_balance_threshold: 2.5,
    });
    expect(on).to.include({ enabled: true, low_balance_threshold: 2.5, disabled_reason: null });
    const mine = [];
    for await (const e of client.webhooks.all({ limit: 1 })) mine.push(e.id);
    expect(mine).to.include(endpoint.id);
    await client.webhooks.delete(endpoint.id);
    expect(await rejects(client.webhooks.get(endpoint.id))).to.be.instanceOf(NotFoundError);
  });

  it("another user's endpoint is 404; an administrator lists and reads it", async () => {
    const { endpoint } = await client.webhooks.create({ url: hook.url, event_types: ['ping'] });
    const stranger = sdk(d, { accessToken: (await buildUser(d)).token });
    expect(await rejects(stranger.webhooks.get(endpoint.id))).to.be.instanceOf(NotFoundError);
    expect(await rejects(stranger.webhooks.ping(endpoint.id))).to.be.instanceOf(NotFoundError);
    const admin = sdk(d, { accessToken: mintToken(d, await platformAdmin(d)) });
    const listed = await admin.webhooks.adminList({ user_id: endpoint.user_id });
    expect(listed.endpoints.map((e) => e.id)).to.include(endpoint.id);
    expect(listed.endpoints.every((e) => e.user_id === endpoint.user_id)).to.equal(true);
    expect((await admin.webhooks.get(endpoint.id)).id).to.equal(endpoint.id);
  });

  it('a bad body is a ValidationError', async () => {
    expect(await rejects(client.webhooks.create({ url: 'not a url', event_types: ['ping'] }))).to.be.instanceOf(
      ValidationError,
    );
    expect(
      await rejects(client.webhooks.create({ url: hook.url, event_types: ['no.such' as 'ping'] })),
    ).to.be.instanceOf(ValidationError);
  });

  it('rotateSecret is sent once even when the answer is lost', async () => {
    const server = await scriptedServer((_req, res) => res.destroy());
    try {
      const c = sdk(server.url, { accessToken: 'x.y.z' }, { maxRetries: 3 });
      await rejects(c.webhooks.rotateSecret('wep_01jabc', { graceSeconds: 60 }));
      expect(server.hits).to.equal(1);
    } finally {
      await server.close();
    }
  });
});
