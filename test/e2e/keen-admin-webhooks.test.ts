import { expect } from 'chai';
import { describeStorage } from '../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { runAdmin } from '../helpers/cli.js';
import { buildApiKey, buildTenant, buildUser, type TestUser } from '../helpers/factories.js';
import { webhookReceiver } from '../helpers/webhooks.js';

const admin = (args: string[], env: Record<string, string>) => runAdmin(args, { env });
/** Each CLI run is a fresh Node process: allow for a busy machine. */
const SPAWN_TIMEOUT = 120_000;

describeStorage('keen-admin webhooks: list, deliveries, resend, ping against a real daemon', (backend) => {
  let d: TestDaemon;
  let root: Record<string, string>;
  let member: TestUser;
  let hook: Awaited<ReturnType<typeof webhookReceiver>>;
  let endpointId: string;

  /** Runs delivery passes until the receiver holds `n` messages (the worker is stopped: the test drives it). */
  async function received(n: number) {
    for (let i = 0; i < 100 && hook.received.length < n; i++) {
      await d.container.webhooks.deliverDueNow();
      if (hook.received.length < n) await new Promise((r) => setTimeout(r, 20));
    }
    expect(hook.received).to.have.length(n);
    return hook.received[n - 1]!;
  }

  before(async () => {
    d = await startDaemon({ backend, config: { webhooks: { allow_private_targets: true } } });
    await d.container.webhooks.stop();
    hook = await webhookReceiver();
    const platform = await buildUser(d, { role: 'admin', tier: 'enterprise' });
    root = { KEEN_URL: d.url, KEEN_API_KEY: (await buildApiKey(d, platform, { name: 'ops' })).key };
    member = await buildUser(d);
    const r = await d.api.post(
      '/v1/webhooks/endpoints',
      { url: hook.url, event_types: ['session.completed', 'session.failed'] },
      { token: member.token },
    );
    expect(r.status, r.text).to.equal(201);
    endpointId = r.body.endpoint.id;
  });
  after(async () => {
    await hook?.close();
    await d?.stop();
  });

  it('list shows endpoints across users, as a table and as JSON, filtered by --user', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const json = await admin(['webhooks', 'list', '--json'], root);
    expect(json.code, json.stderr).to.equal(0);
    const ep = json.json.endpoints.find((e: { id: string }) => e.id === endpointId);
    expect(ep).to.include({ user_id: member.user.id, url: hook.url, enabled: true });
    const table = await admin(['webhooks', 'list', '--user', member.email], root);
    expect(table.code, table.stderr).to.equal(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).to.match(/^ID\s+USER_ID\s+URL\s+EVENT_TYPES\s+ENABLED\s+DISABLED_REASON\s+FAILING_SINCE$/);
    expect(lines).to.have.length(2);
    expect(lines[1]).to.include(endpointId).and.include('session.completed,session.failed').and.include('true');
    const nobody = await admin(['webhooks', 'list', '--user', (await buildUser(d)).email], root);
    expect(nobody.stdout).to.equal('(none)\n');
  });

  it('ping queues a ping; deliveries shows it with every attempt; resend sends the same message again', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const ping = await admin(['webhooks', 'ping', endpointId, '--json'], root);
    expect(ping.code, ping.stderr).to.equal(0);
    const delivery = ping.json.delivery;
    expect(delivery).to.include({ endpoint_id: endpointId, event_type: 'ping', status: 'pending' });
    const got = await received(1);
    expect(got.headers['webhook-id']).to.equal(delivery.id);

    const table = await admin(['webhooks', 'deliveries', endpointId], root);
    expect(table.code, table.stderr).to.equal(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).to.match(
      /^ID\s+EVENT_TYPE\s+STATUS\s+ATTEMPTS\s+LAST_STATUS_CODE\s+LAST_ERROR\s+CREATED_AT\s+DELIVERED_AT$/,
    );
    expect(lines[1]).to.match(new RegExp(`^${delivery.id}\\s+ping\\s+delivered\\s+1\\s+204\\s+-\\s`));
    const json = await admin(['webhooks', 'deliveries', endpointId, '--limit', '5', '--json'], root);
    expect(json.code, json.stderr).to.equal(0);
    expect(json.json.deliveries).to.have.length(1);
    expect(json.json.deliveries[0].attempt_log[0]).to.include({ attempt: 1, status_code: 204, outcome: 'delivered' });
    expect(json.json.deliveries[0].payload).to.deep.equal(JSON.parse(got.body));
    const failed = await admin(['webhooks', 'deliveries', endpointId, '--status', 'failed', '--json'], root);
    expect(failed.json.deliveries).to.deep.equal([]);

    const resend = await admin(['webhooks', 'resend', endpointId, delivery.id], root);
    expect(resend.code, resend.stderr).to.equal(0);
    expect(resend.stdout.split('\n')[1]).to.match(new RegExp(`^${delivery.id}\\s+ping\\s+pending`));
    const busy = await admin(['webhooks', 'resend', endpointId, delivery.id, '--json'], root);
    expect(busy.code).to.equal(1);
    expect(JSON.parse(busy.stderr).error.code).to.equal('INVALID_STATE');
    const again = await received(2);
    expect(again.headers['webhook-id']).to.equal(delivery.id);
    expect(again.body).to.equal(got.body);
  });

  it("a tenant admin lists only their tenant's endpoints; unknown ids fail with exit 1", async function () {
    this.timeout(SPAWN_TIMEOUT);
    const tenantId = await buildTenant(d);
    const tenantAdmin = await buildUser(d, { role: 'admin', tenantId });
    const inTenant = await buildUser(d, { tenantId });
    const r = await d.api.post(
      '/v1/webhooks/endpoints',
      { url: hook.url, event_types: ['*'] },
      { token: inTenant.token },
    );
    expect(r.status, r.text).to.equal(201);
    const env = { KEEN_URL: d.url, KEEN_API_KEY: (await buildApiKey(d, tenantAdmin, { name: 'tenant-ops' })).key };
    const list = await admin(['webhooks', 'list', '--json'], env);
    expect(list.code, list.stderr).to.equal(0);
    expect(list.json.endpoints.map((e: { id: string }) => e.id)).to.deep.equal([r.body.endpoint.id]);
    const outOfReach = await admin(['webhooks', 'ping', endpointId], env);
    expect(outOfReach.code).to.equal(1);
    expect(outOfReach.stderr).to.match(/not found/i);
    const missing = await admin(['webhooks', 'deliveries', 'wep_00000000000000000000000000'], root);
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.match(/NOT_FOUND/);
  });

  it('usage errors exit 2 before connecting', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const offline = { KEEN_URL: 'http://127.0.0.1:9', KEEN_API_KEY: root.KEEN_API_KEY! };
    for (const args of [
      ['webhooks', 'deliveries', endpointId, '--limit', '0'],
      ['webhooks', 'deliveries', endpointId, '--limit', 'ten'],
      ['webhooks', 'deliveries', endpointId, '--status', 'lost'],
      ['webhooks', 'resend', endpointId],
      ['webhooks', 'ping'],
    ]) {
      const r = await admin(args, offline);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(2);
    }
  });
});
