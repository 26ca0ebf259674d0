import { expect } from 'chai';
import { Webhook } from 'standardwebhooks';
import type { AuditEvent, AuditLogger } from '../../../daemon/audit/types.js';
import { SecretBox } from '../../../daemon/auth/secret-box.js';
import { ManualClock } from '../../../daemon/clock.js';
import { createLogger } from '../../../daemon/logger.js';
import {
  presentDelivery,
  presentEndpoint,
  presentEndpointWithSecret,
} from '../../../daemon/http/presenters/webhooks.js';
import { Metrics } from '../../../daemon/metrics.js';
import type { Database, Queryable } from '../../../daemon/storage/database.js';
import { type AttemptRow, type DeliveryRow, WebhookOutbox } from '../../../daemon/storage/repos/webhook-deliveries.js';
import { type EndpointRow, WebhookEndpointRepository } from '../../../daemon/storage/repos/webhook-endpoints.js';
import { WebhookEndpoints } from '../../../daemon/webhooks/endpoints.js';
import {
  BACKOFF_SCHEDULE_MS,
  defaultBackoffMs,
  WebhookService,
  type WebhookServiceOptions,
} from '../../../daemon/webhooks/service.js';
import { describeStorage } from '../../helpers/backends.js';
import { openTestDatabase, type TestDatabase } from '../../helpers/database.js';
import { principal } from '../../helpers/factories.js';
import { insertTestUser } from '../../helpers/users.js';
import { openSecondDatabase } from '../credits/helpers.js';
import { Receiver, statuses } from './support.js';

const serverSecret = Buffer.from('an-endpoint-test-server-secret-32-bytes-plus!');
const HOUR = 3_600_000;

class Audit implements AuditLogger {
  readonly events: AuditEvent[] = [];
  async record(event: AuditEvent, _trx?: Queryable): Promise<void> {
    this.events.push(structuredClone(event));
  }
}

/** Headers as the standardwebhooks package wants them. */
function headersOf(got: { headers: Record<string, unknown> }): Record<string, string> {
  return {
    'webhook-id': String(got.headers['webhook-id']),
    'webhook-timestamp': String(got.headers['webhook-timestamp']),
    'webhook-signature': String(got.headers['webhook-signature']),
  };
}

describe('webhooks/service defaultBackoffMs over a day', () => {
  it('follows the schedule with 80-100% jitter; 9 attempts span 25 to 31.6 hours', () => {
    expect(defaultBackoffMs(1, () => 1)).to.equal(5_000);
    expect(defaultBackoffMs(1, () => 0)).to.equal(4_000);
    expect(defaultBackoffMs(8, () => 1)).to.equal(50_400_000);
    expect(defaultBackoffMs(40, () => 1)).to.equal(50_400_000);
    const total = (r: () => number) =>
      Array.from({ length: 8 }, (_, i) => defaultBackoffMs(i + 1, r)).reduce((a, b) => a + b, 0);
    expect(total(() => 0)).to.be.greaterThan(24 * HOUR);
    expect(total(() => 1)).to.equal(BACKOFF_SCHEDULE_MS.reduce((a, b) => a + b, 0));
  });
});

describe('webhooks presenters: what WebhookEndpoints returns, as the API shows it', () => {
  const at = Date.UTC(2026, 0, 2, 3, 4, 5);
  const t = (ms: number) => new Date(ms).toISOString();
  const endpoint: EndpointRow = {
    id: 'wep_1',
    user_id: 'usr_1',
    tenant_id: 'ten_1',
    url: 'https://hooks.example.com/in',
    description: 'ci',
    event_types: '["session.completed","credits.low_balance"]',
    enabled: 0,
    disabled_reason: 'every delivery failed',
    disabled_at: at - 1_000,
    failing_since: at - 2_000,
    low_balance_threshold: 2_500_000,
    secret_enc: 'sealed-now',
    previous_secret_enc: 'sealed-before',
    previous_secret_expires_at: at + 60_000,
    created_at: at - 9_000,
    updated_at: at - 1_000,
  };

  it('an endpoint: every field in order, never a sealed secret; the old secret’s expiry only while it signs', () => {
    const wire = {
      id: 'wep_1',
      user_id: 'usr_1',
      url: 'https://hooks.example.com/in',
      description: 'ci',
      event_types: ['session.completed', 'credits.low_balance'],
      enabled: false,
      disabled_reason: 'every delivery failed',
      disabled_at: t(at - 1_000),
      failing_since: t(at - 2_000),
      low_balance_threshold: 2.5,
      previous_secret_expires_at: t(at + 60_000),
      created_at: t(at - 9_000),
      updated_at: t(at - 1_000),
    };
    expect(JSON.stringify(presentEndpoint({ row: endpoint, at }))).to.equal(JSON.stringify(wire));
    const expired = presentEndpoint({ row: endpoint, at: at + 60_000 });
    expect(expired.previous_secret_expires_at).to.equal(null);
    const created = presentEndpointWithSecret({ row: { ...endpoint, enabled: 1 }, at, secret: 'whsec_x' });
    expect(Object.keys(created)).to.deep.equal(['endpoint', 'secret']);
    expect(created).to.deep.include({ secret: 'whsec_x' });
    expect(created.endpoint.enabled).to.equal(true);
  });

  it('a delivery: next_attempt_at only while one is due, the payload as sent, every attempt in order', () => {
    const row: DeliveryRow = {
      id: 'whk_1',
      user_id: 'usr_1',
      tenant_id: null,
      session_id: 'ses_1',
      url: 'https://hooks.example.com/in',
      event_type: 'session.completed',
      payload: '{"type":"session.completed","data":{"n":1}}',
      status: 'delivered',
      attempts: 2,
      next_attempt_at: at + 5_000,
      last_status_code: 200,
      last_error: null,
      created_at: at - 3_000,
      updated_at: at,
      delivered_at: at,
      endpoint_id: 'wep_1',
      resends: 0,
    };
    const attempts: AttemptRow[] = [
      {
        delivery_id: 'whk_1',
        attempt: 1,
        endpoint_id: 'wep_1',
        started_at: at - 2_000,
        duration_ms: 12,
        status_code: 503,
        outcome: 'failed',
        error: 'HTTP 503',
        response_excerpt: 'down',
      },
    ];
    const wire = {
      id: 'whk_1',
      endpoint_id: 'wep_1',
      event_type: 'session.completed',
      session_id: 'ses_1',
      status: 'delivered',
      attempts: 2,
      next_attempt_at: null,
      last_status_code: 200,
      last_error: null,
      created_at: t(at - 3_000),
      delivered_at: t(at),
      payload: { type: 'session.completed', data: { n: 1 } },
      attempt_log: [
        {
          attempt: 1,
          started_at: t(at - 2_000),
          duration_ms: 12,
          status_code: 503,
          outcome: 'failed',
          error: 'HTTP 503',
          response_excerpt: 'down',
        },
      ],
    };
    expect(JSON.stringify(presentDelivery({ row, attempts }))).to.equal(JSON.stringify(wire));
    const pending = presentDelivery({ row: { ...row, status: 'pending', delivered_at: null }, attempts: [] });
    expect(pending).to.include({ next_attempt_at: t(at + 5_000), delivered_at: null });
    expect(pending.attempt_log).to.deep.equal([]);
  });
});

describeStorage('webhooks/endpoints: filters, signatures, retries, rotation, resend, disable', (backend) => {
  let tdb: TestDatabase;
  let receiver: Receiver;
  let clock: ManualClock;
  let audit: Audit;
  const services: WebhookService[] = [];
  const box = new SecretBox(serverSecret, 'webhook-endpoint-secrets');

  before(async () => {
    tdb = await openTestDatabase(backend);
  });
  after(async () => tdb?.close());
  beforeEach(async () => {
    receiver = await Receiver.start((_req, res) => res.end('thanks'));
    clock = new ManualClock(Date.now());
    audit = new Audit();
  });
  afterEach(async () => {
    await Promise.all(services.splice(0).map((s) => s.stop()));
    await receiver.close();
  });

  function build(database: Database = tdb.database, over: Partial<WebhookServiceOptions> = {}) {
    const repos = { outbox: new WebhookOutbox(database), endpoints: new WebhookEndpointRepository(database) };
    const webhooks = new WebhookService({
      database,
      ...repos,
      clock,
      logger: createLogger('silent'),
      metrics: new Metrics({ defaultMetrics: false }),
      serverSecret,
      allowPrivateTargets: true,
      secretBox: box,
      audit,
      backoffMs: () => 60_000,
      ...over,
    });
    services.push(webhooks);
    const endpoints = new WebhookEndpoints({
      database,
      ...repos,
      clock,
      audit,
      secretBox: box,
      webhooks,
      allowPrivateTargets: true,
    });
    return { webhooks, endpoints };
  }

  async function owner() {
    const user = await insertTestUser(tdb.database, {});
    return principal(user);
  }

  const emit = (
    webhooks: WebhookService,
    userId: string,
    type: 'session.completed' | 'session.started' | 'credits.low_balance',
    data: unknown = { n: 1 },
  ) => tdb.database.transaction((trx) => webhooks.emit(trx, { type, userIds: [userId], tenantId: null, data }));

  it('sends each event to the endpoints that want it, signed with each endpoint’s own secret (verified by standardwebhooks)', async () => {
    const { webhooks, endpoints } = build();
    const p = await owner();
    const completed = await endpoints.create(p, {
      url: receiver.url('/completed'),
      event_types: ['session.completed'],
    });
    const all = await endpoints.create(p, { url: receiver.url('/all'), event_types: ['*'] });
    const off = await endpoints.create(p, { url: receiver.url('/off'), event_types: ['*'], enabled: false });
    expect(completed.secret)
      .to.match(/^whsec_/)
      .and.not.equal(all.secret);
    await emit(webhooks, p.userId, 'session.started');
    await emit(webhooks, p.userId, 'session.completed', { status: 'completed' });
    // Another user's event reaches none of these.
    await emit(webhooks, (await owner()).userId, 'session.completed');
    await webhooks.deliverDueNow();
    const byPath = (path: string) => receiver.received.filter((r) => r.path === path);
    expect(byPath('/completed').map((r) => JSON.parse(r.body).type)).to.deep.equal(['session.completed']);
    expect(
      byPath('/all')
        .map((r) => JSON.parse(r.body).type)
        .sort(),
    ).to.deep.equal(['session.completed', 'session.started']);
    expect(byPath('/off')).to.deep.equal([]);
    void off;
    for (const [path, secret] of [
      ['/completed', completed.secret],
      ['/all', all.secret],
    ] as const) {
      for (const got of byPath(path)) {
        const msg = new Webhook(secret).verify(got.body, headersOf(got)) as { id: string };
        expect(msg.id).to.equal(got.headers['webhook-id']);
        expect(() =>
          new Webhook(path === '/all' ? completed.secret : all.secret).verify(got.body, headersOf(got)),
        ).to.throw();
      }
    }
  });

  it('a receiver down for a while: retried with the same id until it answers; every attempt is in the log with its answer', async () => {
    receiver.respond = (_req, res, i) => {
      res.statusCode = i < 3 ? 503 : 200;
      res.end(i < 3 ? `down for maintenance ${i}` : 'ok');
    };
    const { webhooks, endpoints } = build();
    const p = await owner();
    const ep = await endpoints.create(p, { url: receiver.url(), event_types: ['session.completed'] });
    await emit(webhooks, p.userId, 'session.completed');
    for (let i = 0; i < 4; i++) {
      await webhooks.deliverDueNow();
      clock.advance(60_000);
    }
    expect(receiver.received).to.have.length(4);
    expect(new Set(receiver.received.map((r) => r.headers['webhook-id'])).size).to.equal(1);
    expect(new Set(receiver.received.map((r) => r.body)).size).to.equal(1);
    const page = await endpoints.deliveries(p, ep.row.id, { limit: 10 });
    expect(page.deliveries).to.have.length(1);
    expect(page.nextCursor).to.equal(null);
    // The service returns the rows; the log as the API shows it is their presentation.
    const d = presentDelivery(page.deliveries[0]!);
    expect(page.deliveries[0]!.attempts).to.have.length(4);
    expect(d).to.include({ status: 'delivered', attempts: 4, last_status_code: 200 });
    expect(d.attempt_log.map((a) => [a.attempt, a.status_code, a.outcome])).to.deep.equal([
      [1, 503, 'failed'],
      [2, 503, 'failed'],
      [3, 503, 'failed'],
      [4, 200, 'delivered'],
    ]);
    expect(d.attempt_log[0]!.response_excerpt).to.equal('down for maintenance 0');
    expect(d.attempt_log[0]!.duration_ms).to.be.a('number');
    // The endpoint delivers again: not failing.
    expect((await endpoints.get(p, ep.row.id)).row.failing_since).to.equal(null);
  });

  it('a daemon restart mid-retry loses nothing: the next daemon delivers it, once', async () => {
    receiver.respond = statuses(500, 204);
    const first = build();
    const p = await owner();
    await first.endpoints.create(p, { url: receiver.url(), event_types: ['*'] });
    await emit(first.webhooks, p.userId, 'session.completed');
    await first.webhooks.deliverDueNow();
    await first.webhooks.stop();
    clock.advance(60_000);
    const second = build();
    await second.webhooks.deliverDueNow();
    await second.webhooks.deliverDueNow();
    expect(receiver.received.map(() => 1)).to.have.length(2);
    expect(receiver.received[0]!.headers['webhook-id']).to.equal(receiver.received[1]!.headers['webhook-id']);
  });

  it('rotation: during the overlap every delivery carries both signatures; after it, only the new one', async () => {
    const { webhooks, endpoints } = build();
    const p = await owner();
    const ep = await endpoints.create(p, { url: receiver.url(), event_types: ['*'] });
    const rotated = await endpoints.rotateSecret(p, ep.row.id, 60);
    expect(rotated.secret).to.not.equal(ep.secret);
    expect(rotated.row.previous_secret_enc).to.equal(ep.row.secret_enc);
    expect(Number(rotated.row.previous_secret_expires_at)).to.equal(rotated.at + 60_000);
    expect(presentEndpointWithSecret(rotated).endpoint.previous_secret_expires_at).to.equal(
      new Date(rotated.at + 60_000).toISOString(),
    );
    await emit(webhooks, p.userId, 'session.completed');
    await webhooks.deliverDueNow();
    const during = receiver.received[0]!;
    expect(String(during.headers['webhook-signature']).split(' ')).to.have.length(2);
    expect(() => new Webhook(ep.secret).verify(during.body, headersOf(during))).not.to.throw();
    expect(() => new Webhook(rotated.secret).verify(during.body, headersOf(during))).not.to.throw();
    clock.advance(60_001); // within the receiver's 5-minute timestamp tolerance
    await emit(webhooks, p.userId, 'session.completed');
    await webhooks.deliverDueNow();
    const after = receiver.received[1]!;
    expect(String(after.headers['webhook-signature']).split(' ')).to.have.length(1);
    expect(() => new Webhook(ep.secret).verify(after.body, headersOf(after))).to.throw();
    expect(() => new Webhook(rotated.secret).verify(after.body, headersOf(after))).not.to.throw();
    // Grace 0: the old secret stops signing at once.
    const again = await endpoints.rotateSecret(p, ep.row.id, 0);
    expect(again.row.previous_secret_enc).to.equal(null);
    expect(presentEndpointWithSecret(again).endpoint.previous_secret_expires_at).to.equal(null);
    expect(audit.events.filter((e) => e.action === 'webhook.secret_rotate')).to.have.length(2);
    expect(JSON.stringify(audit.events)).not.to.include(rotated.secret.slice(6));
  });

  it('resend sends the same message and id again, only once it is done; ping reaches any endpoint', async () => {
    const { webhooks, endpoints } = build();
    const p = await owner();
    const ep = await endpoints.create(p, { url: receiver.url(), event_types: ['session.completed'] });
    await emit(webhooks, p.userId, 'session.completed');
    const [pending] = (await endpoints.deliveries(p, ep.row.id, { limit: 5 })).deliveries;
    await expectCode(endpoints.resend(p, ep.row.id, pending!.row.id), 'INVALID_STATE');
    await webhooks.deliverDueNow();
    const resent = await endpoints.resend(p, ep.row.id, pending!.row.id);
    expect(resent.row.status).to.equal('pending');
    await webhooks.deliverDueNow();
    expect(receiver.received).to.have.length(2);
    expect(receiver.received[1]!.body).to.equal(receiver.received[0]!.body);
    expect(receiver.received[1]!.headers['webhook-id']).to.equal(pending!.row.id);
    const ping = await endpoints.ping(p, ep.row.id);
    expect(ping.row.event_type).to.equal('ping');
    await webhooks.deliverDueNow();
    expect(JSON.parse(receiver.received[2]!.body)).to.include({ type: 'ping' });
    // Someone else's endpoint and delivery are not found.
    const stranger = await owner();
    await expectCode(endpoints.resend(stranger, ep.row.id, pending!.row.id), 'NOT_FOUND');
    await expectCode(endpoints.deliveries(stranger, ep.row.id, { limit: 5 }), 'NOT_FOUND');
  });

  it('an endpoint failing for the configured time is disabled, audited, says why; its deliveries stop', async () => {
    receiver.respond = statuses(500);
    const { webhooks, endpoints } = build(tdb.database, { disableAfterMs: 10 * HOUR, backoffMs: () => 4 * HOUR });
    const p = await owner();
    const ep = await endpoints.create(p, { url: receiver.url(), event_types: ['*'] });
    await emit(webhooks, p.userId, 'session.completed');
    for (let i = 0; i < 4; i++) {
      await webhooks.deliverDueNow();
      clock.advance(4 * HOUR);
    }
    const now = presentEndpoint(await endpoints.get(p, ep.row.id));
    expect(now.enabled).to.equal(false);
    expect(now.disabled_reason).to.match(/every delivery failed since .* HTTP 500/);
    const disabled = audit.events.filter((e) => e.action === 'webhook.endpoint_disabled');
    expect(disabled).to.have.length(1);
    expect(disabled[0]!.target).to.deep.equal({ type: 'webhook_endpoint', id: ep.row.id });
    const before = receiver.received.length;
    await emit(webhooks, p.userId, 'session.completed');
    await webhooks.deliverDueNow();
    expect(receiver.received.length).to.equal(before);
    await expectCode(endpoints.ping(p, ep.row.id), 'INVALID_STATE');
    // Enabled again by its owner: clean slate.
    const back = presentEndpoint(await endpoints.update(p, ep.row.id, { enabled: true }));
    expect(back).to.include({ enabled: true, disabled_reason: null, failing_since: null });
  });

  it('refuses URLs the SSRF policy refuses, and bad event types, writing nothing', async () => {
    const webhooks = build().webhooks;
    const strict = new WebhookEndpoints({
      database: tdb.database,
      outbox: new WebhookOutbox(tdb.database),
      endpoints: new WebhookEndpointRepository(tdb.database),
      clock,
      audit,
      secretBox: box,
      webhooks,
      allowPrivateTargets: false,
    });
    const p = await owner();
    for (const url of [
      'http://example.com/hook',
      'https://127.0.0.1/hook',
      'https://10.1.2.3/x',
      'https://169.254.169.254/latest',
      'https://[::1]/x',
      'https://0x7f.1/x',
      'https://user:pw@example.com/x',
    ]) {
      const err = await expectCode(strict.create(p, { url, event_types: ['*'] }), 'INVALID_FIELD');
      expect(
        (err.details as Array<{ field: string }>).map((x) => x.field),
        url,
      ).to.include('url');
    }
    await expectCode(
      strict.create(p, { url: 'https://hooks.example.com/x', event_types: ['session.exploded'] }),
      'INVALID_FIELD',
    );
    await expectCode(strict.create(p, { url: 'https://hooks.example.com/x', event_types: [] }), 'INVALID_FIELD');
    expect((await strict.list({ userId: p.userId }, { limit: 10 })).endpoints).to.deep.equal([]);
  });

  if (backend === 'postgres') {
    it('two daemons on one Postgres deliver each event once per endpoint', async () => {
      const other = openSecondDatabase(tdb.home.databaseUrl, 5);
      try {
        const a = build();
        const b = build(other);
        const p = await owner();
        await a.endpoints.create(p, { url: receiver.url('/one'), event_types: ['*'] });
        await a.endpoints.create(p, { url: receiver.url('/two'), event_types: ['session.completed'] });
        for (let i = 0; i < 20; i++) await emit(a.webhooks, p.userId, 'session.completed', { i });
        await Promise.all([
          a.webhooks.deliverDueNow(),
          b.webhooks.deliverDueNow(),
          a.webhooks.deliverDueNow(),
          b.webhooks.deliverDueNow(),
        ]);
        expect(receiver.received).to.have.length(40);
        expect(new Set(receiver.received.map((r) => `${r.path} ${r.headers['webhook-id']}`)).size).to.equal(40);
      } finally {
        await other.close();
      }
    });
  }
});

async function expectCode(p: Promise<unknown>, code: string): Promise<{ code: string; details: unknown }> {
  try {
    await p;
  } catch (err) {
    expect((err as { code: string }).code).to.equal(code);
    return err as { code: string; details: unknown };
  }
  throw new Error(`expected ${code}`);
}
