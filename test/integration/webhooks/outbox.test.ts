import { expect } from 'chai';
import { ManualClock } from '../../../daemon/clock.js';
import { newId } from '../../../daemon/ids.js';
import { createLogger } from '../../../daemon/logger.js';
import { Metrics } from '../../../daemon/metrics.js';
import { Database } from '../../../daemon/storage/database.js';
import { WebhookOutbox } from '../../../daemon/storage/repos/webhook-deliveries.js';
import { WebhookEndpointRepository } from '../../../daemon/storage/repos/webhook-endpoints.js';
import { WebhookService, type EnqueueWebhook, type WebhookServiceOptions } from '../../../daemon/webhooks/service.js';
import { verifySignature } from '../../../daemon/webhooks/signing.js';
import { describeStorage } from '../../helpers/backends.js';
import { openTestDatabase, type TestDatabase } from '../../helpers/database.js';
import { Receiver, statuses } from './support.js';

const serverSecret = Buffer.from('an-outbox-test-server-secret-32-bytes-plus!');

describeStorage('webhooks/outbox and worker', (backend) => {
  let tdb: TestDatabase;
  let receiver: Receiver;
  let clock: ManualClock;
  let metrics: Metrics;
  const services: WebhookService[] = [];

  before(async () => {
    tdb = await openTestDatabase(backend);
  });
  after(async () => tdb?.close());
  beforeEach(async () => {
    receiver = await Receiver.start();
    clock = new ManualClock(Date.now());
    metrics = new Metrics({ defaultMetrics: false });
    await tdb.database.db.deleteFrom('webhook_deliveries').execute();
  });
  afterEach(async () => {
    await Promise.all(services.splice(0).map((s) => s.stop()));
    await receiver.close();
  });

  function service(over: Partial<WebhookServiceOptions> = {}): WebhookService {
    const s = new WebhookService({
      database: tdb.database,
      outbox: new WebhookOutbox(tdb.database),
      endpoints: new WebhookEndpointRepository(tdb.database),
      clock,
      logger: createLogger('silent'),
      metrics,
      serverSecret,
      allowPrivateTargets: true,
      backoffMs: () => 1_000,
      ...over,
    });
    services.push(s);
    return s;
  }

  function event(over: Partial<EnqueueWebhook> = {}): EnqueueWebhook {
    return {
      userId: 'usr_webhook_owner',
      tenantId: 'ten_webhook_owner',
      sessionId: newId('ses'),
      url: receiver.url(),
      eventType: 'session.completed',
      data: { status: 'completed', final_cost: 1.25 },
      ...over,
    };
  }

  const row = (id: string) =>
    tdb.database.db.selectFrom('webhook_deliveries').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

  async function outcomes(): Promise<Record<string, number>> {
    const metric = (await metrics.registry.getSingleMetric('keen_webhook_deliveries_total')!.get()).values;
    return Object.fromEntries(metric.map((v) => [String(v.labels.outcome), v.value]));
  }

  it('delivers a signed message the receiver verifies, and records it', async () => {
    const svc = service();
    const input = event();
    const { id } = await svc.enqueue(input);
    expect(id).to.match(/^whk_/);
    expect(await row(id)).to.include({
      status: 'pending',
      attempts: 0,
      user_id: input.userId,
      session_id: input.sessionId,
      event_type: 'session.completed',
    });

    expect(await svc.deliverDueNow()).to.deep.equal({ delivered: 1, retry: 0, failed: 0, refused: 0 });
    expect(receiver.received).to.have.length(1);
    const got = receiver.received[0]!;
    const secret = svc.signingSecretFor(input.userId);
    expect(secret).to.match(/^whsec_/);
    expect(verifySignature(secret, got.headers, got.body, 300, clock.now())).to.equal(true);
    expect(verifySignature(secret, got.headers, got.body.replace('1.25', '0.01'), 300, clock.now())).to.equal(false);
    expect(verifySignature(svc.signingSecretFor('usr_someone_else'), got.headers, got.body, 300, clock.now())).to.equal(
      false,
    );
    expect(got.headers['webhook-id']).to.equal(id);
    expect(JSON.parse(got.body)).to.deep.equal({
      id,
      type: 'session.completed',
      timestamp: new Date(clock.now()).toISOString(),
      data: { status: 'completed', final_cost: 1.25 },
    });

    const done = await row(id);
    expect(done).to.include({
      status: 'delivered',
      attempts: 1,
      last_status_code: 200,
      last_error: null,
      delivered_at: clock.now(),
    });
    expect(await svc.deliverDueNow()).to.deep.equal({ delivered: 0, retry: 0, failed: 0, refused: 0 });
    expect(receiver.received).to.have.length(1);
    expect(await outcomes()).to.deep.equal({ delivered: 1 });
    const latency = (await metrics.registry.getSingleMetric('keen_webhook_delivery_duration_seconds')!.get()).values;
    expect(
      latency.find((v) => (v as { metricName?: string }).metricName === 'keen_webhook_delivery_duration_seconds_count')
        ?.value,
    ).to.equal(1);
  });

  it('retries a 500 after the backoff with the same webhook-id, then delivers; attempts are counted', async () => {
    receiver.respond = statuses(500, 502, 200);
    const svc = service({ backoffMs: (attempt) => attempt * 1_000 });
    const { id } = await svc.enqueue(event());

    expect(await svc.deliverDueNow()).to.include({ retry: 1 });
    expect(await row(id)).to.include({
      status: 'pending',
      attempts: 1,
      last_status_code: 500,
      last_error: 'HTTP 500',
      next_attempt_at: clock.now() + 1_000,
    });
    expect(await svc.deliverDueNow()).to.include({ retry: 0, delivered: 0 }); // not due yet
    clock.advance(1_000);
    expect(await svc.deliverDueNow()).to.include({ retry: 1 });
    expect(await row(id)).to.include({ attempts: 2, last_status_code: 502, next_attempt_at: clock.now() + 2_000 });
    clock.advance(2_000);
    expect(await svc.deliverDueNow()).to.include({ delivered: 1 });
    expect(await row(id)).to.include({ status: 'delivered', attempts: 3, last_status_code: 200, last_error: null });

    expect(receiver.received.map((r) => r.headers['webhook-id'])).to.deep.equal([id, id, id]);
    const bodies = new Set(receiver.received.map((r) => r.body));
    expect(bodies.size).to.equal(1); // the same bytes every time; only the timestamp and signature move
    expect(new Set(receiver.received.map((r) => r.headers['webhook-timestamp'])).size).to.equal(3);
    expect(await outcomes()).to.deep.equal({ retry: 2, delivered: 1 });
  });

  it('gives up after maxAttempts and marks the delivery failed', async () => {
    receiver.respond = statuses(503);
    const svc = service({ maxAttempts: 3, backoffMs: () => 0 });
    const { id } = await svc.enqueue(event({ eventType: 'session.failed' }));
    expect(await svc.deliverDueNow()).to.include({ retry: 1 });
    expect(await svc.deliverDueNow()).to.include({ retry: 1 });
    expect(await svc.deliverDueNow()).to.include({ failed: 1 });
    expect(await row(id)).to.include({
      status: 'failed',
      attempts: 3,
      last_status_code: 503,
      last_error: 'HTTP 503',
      delivered_at: null,
    });
    clock.advance(3_600_000);
    expect(await svc.deliverDueNow()).to.deep.equal({ delivered: 0, retry: 0, failed: 0, refused: 0 });
    expect(receiver.received).to.have.length(3);
    expect(await outcomes()).to.deep.equal({ retry: 2, failed: 1 });
  });

  it('records a redirect as a failed attempt and never follows it', async () => {
    const inside = await Receiver.start();
    try {
      receiver.respond = (_req, res) => {
        res.writeHead(302, { location: `http://127.0.0.1:${inside.port}/` });
        res.end();
      };
      const svc = service();
      const { id } = await svc.enqueue(event());
      expect(await svc.deliverDueNow()).to.include({ retry: 1 });
      const r = await row(id);
      expect(r).to.include({ status: 'pending', attempts: 1, last_status_code: 302 });
      expect(r.last_error).to.match(/^redirect/);
      expect(inside.connections).to.equal(0);
    } finally {
      await inside.close();
    }
  });

  it('with private targets refused: fails loopback, private, metadata and localhost targets without connecting', async () => {
    const svc = service({ allowPrivateTargets: false });
    const port = receiver.port;
    const urls = [
      `https://127.0.0.1:${port}/`,
      `https://10.0.0.1:${port}/`,
      `https://169.254.169.254:${port}/latest/meta-data/`,
      `https://[::1]:${port}/`,
      `https://[::ffff:127.0.0.1]:${port}/`,
      `https://0.0.0.0:${port}/`,
      `https://localhost:${port}/`,
      receiver.url(), // plain http
    ];
    const ids = [];
    for (const url of urls) ids.push((await svc.enqueue(event({ url }))).id);
    expect(await svc.deliverDueNow()).to.deep.equal({ delivered: 0, retry: 0, failed: 0, refused: urls.length });
    for (const id of ids) {
      const r = await row(id);
      expect(r).to.include({ status: 'failed', attempts: 1, last_status_code: null });
      expect(r.last_error).to.match(/^refused: /);
      expect(r.last_error).to.not.include(String(port)); // no URL in the stored reason
    }
    expect((await row(ids[6]!)).last_error).to.match(/^refused: localhost resolves to/);
    expect(receiver.connections).to.equal(0);
    expect(await outcomes()).to.deep.equal({ refused: urls.length });
  });

  it('gives up on a receiver that never answers within the attempt timeout, and retries later', async () => {
    receiver.respond = () => undefined;
    const svc = service({ totalTimeoutMs: 300 });
    const { id } = await svc.enqueue(event());
    const started = Date.now();
    expect(await svc.deliverDueNow()).to.include({ retry: 1 });
    expect(Date.now() - started).to.be.below(3_000);
    expect((await row(id)).last_error).to.equal('timeout: no complete response within 300 ms');
  });

  it('enqueue inside a rolled-back transaction leaves nothing; inside a committed one, the delivery', async () => {
    const svc = service();
    const err = await tdb.database
      .transaction(async (trx) => {
        await svc.enqueue(event(), trx);
        throw new Error('the session could not be finalized');
      })
      .catch((e: unknown) => e);
    expect(err).to.be.instanceOf(Error);
    expect(await tdb.database.db.selectFrom('webhook_deliveries').select('id').execute()).to.have.length(0);
    expect(await svc.deliverDueNow()).to.include({ delivered: 0 });

    const { id } = await tdb.database.transaction((trx) => svc.enqueue(event(), trx));
    expect(await svc.deliverDueNow()).to.include({ delivered: 1 });
    expect((await row(id)).status).to.equal('delivered');
    expect(receiver.received).to.have.length(1);
  });

  it('two workers on one database never deliver the same delivery twice', async function () {
    this.timeout(60_000);
    const secondDb = new Database({
      url: tdb.home.databaseUrl,
      poolMax: 10,
      connectTimeoutMs: 5000,
      busyTimeoutMs: 10_000,
      logger: createLogger('silent'),
    });
    try {
      receiver.respond = (_req, res) => setTimeout(() => res.end('ok'), 5);
      const a = service({ concurrency: 4 });
      const b = service({ database: secondDb, concurrency: 4, metrics: new Metrics({ defaultMetrics: false }) });
      const n = 40;
      const ids = new Set<string>();
      for (let i = 0; i < n; i++) ids.add((await a.enqueue(event({ sessionId: `ses_${i}` }))).id);
      await secondDb.ping(); // two running daemons: both pools are warm
      const passes = await Promise.all([a.deliverDueNow(), b.deliverDueNow(), a.deliverDueNow(), b.deliverDueNow()]);
      // deliverDueNow shares a running pass, so each worker ran one pass.
      expect(passes[0]!.delivered + passes[1]!.delivered).to.equal(n);
      expect(passes[0]!.delivered).to.be.above(0);
      expect(passes[1]!.delivered).to.be.above(0);
      const seen = receiver.received.map((r) => String(r.headers['webhook-id']));
      expect(seen).to.have.length(n);
      expect(new Set(seen)).to.deep.equal(ids);
      const rows = await tdb.database.db.selectFrom('webhook_deliveries').select(['status', 'attempts']).execute();
      expect(rows.every((r) => r.status === 'delivered' && r.attempts === 1)).to.equal(true);
    } finally {
      await secondDb.close();
    }
  });

  it('the worker delivers on its own once started, and stop() waits for it', async () => {
    const svc = service({ pollIntervalMs: 20 });
    const { id } = await svc.enqueue(event());
    svc.start();
    const deadline = Date.now() + 5_000;
    while ((await row(id)).status !== 'delivered' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await svc.stop();
    expect((await row(id)).status).to.equal('delivered');
    expect(receiver.received).to.have.length(1);
  });

  it('a claim takes at most `limit` deliveries, oldest due first, and skips the ones handled in the pass', async () => {
    const svc = service();
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) {
      ids.push((await svc.enqueue(event())).id);
      clock.advance(1);
    }
    const outbox = new WebhookOutbox(tdb.database);
    const claim = (exclude: string[] = []) =>
      outbox.claimDue({ now: clock.now(), limit: 4, leaseMs: 60_000, maxAttempts: 6, exclude });
    expect((await claim()).map((r) => r.id).sort()).to.deep.equal(ids.slice(0, 4));
    expect((await claim(ids.slice(4, 6))).map((r) => r.id).sort()).to.deep.equal(ids.slice(6, 10));
    expect((await claim()).map((r) => r.id).sort()).to.deep.equal(ids.slice(4, 6));
    expect(await claim()).to.deep.equal([]);
  });

  describe('a worker that died mid-attempt', () => {
    const leaseMs = 60_000;

    async function claimAndDie(svcMaxAttempts: number): Promise<string> {
      const svc = service({ leaseMs, maxAttempts: svcMaxAttempts });
      const { id } = await svc.enqueue(event());
      // What a claim does, without the attempt ever reporting back.
      const claimed = await new WebhookOutbox(tdb.database).claimDue({
        now: clock.now(),
        limit: 10,
        leaseMs,
        maxAttempts: svcMaxAttempts,
        exclude: [],
      });
      expect(claimed.map((c) => c.id)).to.deep.equal([id]);
      expect(await row(id)).to.include({ status: 'delivering', attempts: 1, next_attempt_at: clock.now() + leaseMs });
      return id;
    }

    it('leaves a claim that is retaken once its lease lapses', async () => {
      const id = await claimAndDie(6);
      const svc = service({ leaseMs });
      expect(await svc.deliverDueNow()).to.include({ delivered: 0 });
      expect(receiver.received).to.have.length(0);
      clock.advance(leaseMs);
      expect(await svc.deliverDueNow()).to.include({ delivered: 1 });
      expect(await row(id)).to.include({ status: 'delivered', attempts: 2 });
    });

    it('is failed when that was its last attempt', async () => {
      const id = await claimAndDie(1);
      const svc = service({ leaseMs, maxAttempts: 1 });
      clock.advance(leaseMs);
      expect(await svc.deliverDueNow()).to.include({ failed: 1 });
      expect(await row(id)).to.include({
        status: 'failed',
        attempts: 1,
        last_error: 'abandoned: the last attempt did not report an outcome',
      });
      expect(receiver.received).to.have.length(0);
    });

    it('cannot overwrite the outcome of the worker that retook its delivery', async () => {
      const outbox = new WebhookOutbox(tdb.database);
      const id = await claimAndDie(6);
      clock.advance(leaseMs);
      const retaken = await outbox.claimDue({ now: clock.now(), limit: 10, leaseMs, maxAttempts: 6, exclude: [] });
      expect(retaken.map((r) => r.attempts)).to.deep.equal([2]);
      expect(await outbox.record(id, 1, { status: 'failed', last_error: 'late', updated_at: clock.now() })).to.equal(
        false,
      );
      expect(
        await outbox.record(id, 2, { status: 'delivered', delivered_at: clock.now(), updated_at: clock.now() }),
      ).to.equal(true);
      expect(await row(id)).to.include({ status: 'delivered', last_error: null });
    });
  });
});
