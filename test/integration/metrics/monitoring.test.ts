import { expect } from 'chai';
import { ManualClock } from '../../../daemon/clock.js';
import { toMicros } from '../../../daemon/credits/money.js';
import { Metrics } from '../../../daemon/metrics.js';
import { LedgerDriftMonitor } from '../../../daemon/monitoring/ledger-drift.js';
import { RedisProbe } from '../../../daemon/monitoring/redis.js';
import { createRedis } from '../../../daemon/redis.js';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildUser } from '../../helpers/factories.js';
import { grant } from '../../helpers/sessions.js';
import { ensureMonitoring, parseExposition } from './support.js';

const silent = { info() {}, warn() {}, error() {}, debug() {} } as never;

async function metricValue(d: TestDaemon, name: string, labels: Record<string, string> = {}): Promise<number> {
  const s = parseExposition(await d.container.metrics.registry.metrics());
  return s.samples
    .filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))
    .reduce((a, x) => a + x.value, 0);
}

describeStorage('monitoring jobs', (backend) => {
  let d: TestDaemon;
  const clock = new ManualClock(Date.now());

  before(async () => {
    d = await startDaemon({ backend, logLevel: 'fatal', clock });
  });
  after(async () => d?.stop());

  it('ledger drift: 0 on a clean ledger, the number of drifting accounts after a hand edit, 0 again once repaired', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const job = new LedgerDriftMonitor({ ledger: d.container.ledger, metrics, clock, logger: silent });
    const a = await buildUser(d);
    const b = await buildUser(d);
    await grant(d, a, 10);
    await grant(d, b, 10);
    expect(await job.tick()).to.equal(0);
    expect((await metrics.registry.getSingleMetricAsString('keen_ledger_drift_accounts')).split('\n').pop()).to.equal(
      'keen_ledger_drift_accounts 0',
    );
    expect(
      (await metrics.registry.getSingleMetricAsString('keen_ledger_verify_last_success_timestamp_seconds'))
        .split('\n')
        .pop(),
    ).to.equal(`keen_ledger_verify_last_success_timestamp_seconds ${Math.floor(clock.now() / 1000)}`);

    // Someone edits two balances behind the ledger's back.
    const db = d.container.database.db;
    const saved = await db
      .selectFrom('credit_accounts')
      .selectAll()
      .where('user_id', 'in', [a.user.id, b.user.id])
      .execute();
    for (const u of [a, b])
      await db
        .updateTable('credit_accounts')
        .set({ balance: toMicros(11) as number })
        .where('user_id', '=', u.user.id)
        .execute();
    expect(await job.tick()).to.equal(2);
    expect(await metrics.registry.getSingleMetricAsString('keen_ledger_drift_accounts')).to.match(
      /keen_ledger_drift_accounts 2$/,
    );
    // No user id reaches the series.
    expect(await metrics.registry.metrics()).to.not.include(a.user.id);

    for (const row of saved)
      await db.updateTable('credit_accounts').set(row).where('user_id', '=', row.user_id).execute();
    expect(await job.tick()).to.equal(0);
  });

  it('ledger drift: a failed pass counts a failure and keeps the last value; start() runs it on its timer', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    let calls = 0;
    const failing = {
      verify: async () => {
        calls++;
        if (calls === 2) throw new Error('database went away');
        return [{ userId: 'usr_x', check: 'balance' as const, expected: 1, actual: 2, message: 'm' }];
      },
    };
    const job = new LedgerDriftMonitor({
      ledger: failing,
      metrics,
      clock,
      logger: silent,
      firstDelayMs: 1,
      intervalMs: 10,
    });
    expect(await job.tick()).to.equal(1);
    expect(await job.tick()).to.equal(null);
    expect(await metrics.registry.getSingleMetricAsString('keen_ledger_verify_failures_total')).to.match(/ 1$/);
    expect(await metrics.registry.getSingleMetricAsString('keen_ledger_drift_accounts')).to.match(/ 1$/);
    job.start();
    job.start(); // idempotent
    const until = Date.now() + 2000;
    while (calls < 4 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    await job.stop();
    expect(calls).to.be.greaterThanOrEqual(4);
  });

  it('expired-but-open reservations: counted once their lease is a minute past due, gone when reaped', async () => {
    ensureMonitoring(d);
    const u = await buildUser(d);
    await grant(d, u, 5);
    await d.container.ledger.reserve({
      userId: u.user.id,
      amount: toMicros(1),
      ttlMs: 30_000,
      actor: { type: 'system', id: null },
    });
    expect(await metricValue(d, 'keen_credit_reservations_expired_open')).to.equal(0);
    clock.advance(30_000 + 59_000);
    expect(await metricValue(d, 'keen_credit_reservations_expired_open')).to.equal(0);
    clock.advance(2_000);
    expect(await metricValue(d, 'keen_credit_reservations_expired_open')).to.equal(1);
    await d.container.ledger.reapExpired(clock.now());
    expect(await metricValue(d, 'keen_credit_reservations_expired_open')).to.equal(0);
  });

  it('database latency and errors: transactions and pings are timed; a business refusal is no database error', async () => {
    ensureMonitoring(d);
    const backend = d.container.database.dialect;
    const before = await metricValue(d, 'keen_database_query_duration_seconds_count', {
      backend,
      operation: 'transaction',
    });
    const errorsBefore = await metricValue(d, 'keen_database_errors_total', { backend });
    await d.container.database.transaction(async () => 1);
    await d.container.database
      .transaction(async () => Promise.reject(new Error('INSUFFICIENT_CREDITS')))
      .catch(() => undefined);
    expect(
      await metricValue(d, 'keen_database_query_duration_seconds_count', { backend, operation: 'transaction' }),
    ).to.equal(before + 2);
    expect(await metricValue(d, 'keen_database_errors_total', { backend })).to.equal(errorsBefore);
    const unavailable = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    await d.container.database.transaction(async () => Promise.reject(unavailable)).catch(() => undefined);
    expect(await metricValue(d, 'keen_database_errors_total', { backend })).to.equal(errorsBefore + 1);
  });
});

describe('monitoring: Redis probe', () => {
  it('without Redis: registered, no samples, start/stop are no-ops', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const probe = new RedisProbe(null, metrics);
    probe.start();
    await probe.tick();
    await probe.stop();
    expect(await metrics.registry.getSingleMetricAsString('keen_redis_ping_duration_seconds')).to.include(
      'keen_redis_ping_duration_seconds_count 0',
    );
  });

  it('a Redis that does not answer: connection errors and failed pings are counted', async function () {
    this.timeout(10_000);
    const metrics = new Metrics({ defaultMetrics: false });
    // Port 1 on loopback: nothing listens, every connect is refused.
    const redis = createRedis('redis://127.0.0.1:1', { warn() {}, info() {} }, { maxReconnectDelayMs: 50 });
    const probe = new RedisProbe(redis, metrics, 20);
    try {
      probe.start();
      const until = Date.now() + 3000;
      let text = '';
      while (Date.now() < until) {
        text = await metrics.registry.getSingleMetricAsString('keen_redis_errors_total');
        if (/kind="connection"\} [1-9]/.test(text) && /kind="ping"\} [1-9]/.test(text)) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(text).to.match(/kind="connection"\} [1-9]/);
      expect(text).to.match(/kind="ping"\} [1-9]/);
    } finally {
      await probe.stop();
      redis.disconnect();
    }
  });
});
