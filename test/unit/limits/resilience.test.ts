import { expect } from 'chai';
import type { Redis } from 'ioredis';
import { GatewayError } from '../../../daemon/errors.js';
import { RateLimitBackendError } from '../../../daemon/limits/errors.js';
import { MemoryRateLimiter } from '../../../daemon/limits/memory.js';
import { RateLimitMetrics } from '../../../daemon/limits/metrics.js';
import { checkAll, decisionRecords, type RateLimitPolicy } from '../../../daemon/limits/policy.js';
import { RedisRateLimiter } from '../../../daemon/limits/redis.js';
import { ResilientRateLimiter } from '../../../daemon/limits/resilient.js';
import { Metrics } from '../../../daemon/metrics.js';
import { createRedis, isRedisUnavailableError, reconnectDelay } from '../../../daemon/redis.js';
import { TEST_REDIS_URL } from '../../helpers/env.js';
import {
  describeRedis,
  eventually,
  freshPrefix,
  LogSpy,
  RUN_PREFIX,
  deleteKeys,
  ready,
  TcpProxy,
  testRedis,
} from './support.js';

const HOUR = 3_600_000;

async function metricValue(metrics: Metrics, name: string, labels: Record<string, string>): Promise<number> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  const value = metric?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return value?.value ?? 0;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('redis client', () => {
  it('reconnects forever with a capped backoff', () => {
    expect([1, 2, 5, 19, 20, 21, 10_000].map((n) => reconnectDelay(n))).to.deep.equal([
      100, 200, 500, 1900, 2000, 2000, 2000,
    ]);
    expect(reconnectDelay(50, 300)).to.equal(300);
  });

  it('recognises the errors that mean Redis is unreachable, and nothing else', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    const maxRetries = Object.assign(new Error('Reached the max retries per request limit (which is 1).'), {
      name: 'MaxRetriesPerRequestError',
    });
    for (const err of [
      new Error('Connection is closed.'),
      new Error("Stream isn't writeable and enableOfflineQueue options is false"),
      new Error('Command timed out'),
      new Error('LOADING Redis is loading the dataset in memory'),
      refused,
      maxRetries,
      new AggregateError([refused], 'connect failed'),
      new RateLimitBackendError('wrapped', refused),
    ]) {
      expect(isRedisUnavailableError(err), err.message).to.equal(true);
    }
    for (const err of [new Error('ERR wrong number of arguments'), new RangeError('bad limit'), 'text', null]) {
      expect(isRedisUnavailableError(err), String(err)).to.equal(false);
    }
  });

  it('survives a Redis it cannot reach: commands fail at once, errors are logged once, not thrown', async () => {
    const log = new LogSpy();
    const client = createRedis('redis://127.0.0.1:1', log, { maxReconnectDelayMs: 20 });
    try {
      const err = await rejection(client.ping());
      expect(isRedisUnavailableError(err)).to.equal(true);
      // Let it retry a few times: one warning per outage, no crash, still reconnecting.
      await eventually(async () => log.warnings.length > 0);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(log.warnings).to.have.length(1);
      expect(client.status).to.be.oneOf(['connecting', 'reconnecting', 'connect']);
    } finally {
      client.disconnect();
    }
  });
});

describe('resilient limiter on an unreachable Redis', () => {
  let client: Redis;
  let metrics: Metrics;
  let rlMetrics: RateLimitMetrics;
  let backend: RedisRateLimiter;

  beforeEach(() => {
    client = createRedis('redis://127.0.0.1:1', new LogSpy(), { maxReconnectDelayMs: 50 });
    metrics = new Metrics({ defaultMetrics: false });
    rlMetrics = new RateLimitMetrics(metrics);
    backend = new RedisRateLimiter({ redis: client, prefix: freshPrefix() });
  });
  afterEach(() => client.disconnect());

  it('the Redis limiter itself throws RateLimitBackendError', async () => {
    const err = await rejection(backend.consume('k', 10, HOUR));
    expect(err).to.be.instanceOf(RateLimitBackendError);
    expect((err as RateLimitBackendError).unavailable).to.equal(true);
    expect(await rejection(backend.reset('k'))).to.be.instanceOf(RateLimitBackendError);
  });

  it('fail_closed answers 503 UNAVAILABLE with Retry-After and counts the failure', async () => {
    const limiter = new ResilientRateLimiter({
      limiter: backend,
      metrics: rlMetrics,
      mode: 'fail_closed',
      retryAfterSeconds: 2,
    });
    const err = await rejection(limiter.consume('k', 10, HOUR));
    expect(err).to.be.instanceOf(GatewayError);
    const g = err as GatewayError;
    expect(g.code).to.equal('UNAVAILABLE');
    expect(g.status).to.equal(503);
    expect(g.headers).to.deep.equal({ 'Retry-After': '2' });
    expect(g.cause).to.be.instanceOf(RateLimitBackendError);
    expect(await metricValue(metrics, 'keen_ratelimit_backend_failures_total', { mode: 'fail_closed' })).to.equal(1);
    expect(await metricValue(metrics, 'keen_ratelimit_backend_failures_total', { mode: 'fail_open' })).to.equal(0);
  });

  it('fail_open lets the request through marked degraded and counts the failure', async () => {
    const limiter = new ResilientRateLimiter({ limiter: backend, metrics: rlMetrics, mode: 'fail_open' });
    const d = await limiter.consume('k', 10, HOUR);
    expect(d).to.deep.equal({ allowed: true, limit: 10, remaining: 10, resetMs: 0, retryAfterMs: 0, degraded: true });
    expect((await limiter.peek('k', 10, HOUR)).degraded).to.equal(true);
    await limiter.reset('k');
    expect(await metricValue(metrics, 'keen_ratelimit_backend_failures_total', { mode: 'fail_open' })).to.equal(3);
  });

  it('a call or a policy may choose its own mode; fail_closed wins in a check', async () => {
    const limiter = new ResilientRateLimiter({ limiter: backend, metrics: rlMetrics, mode: 'fail_open' });
    expect(await rejection(limiter.consume('k', 10, HOUR, 1, 'fail_closed'))).to.be.instanceOf(GatewayError);

    const open: RateLimitPolicy[] = [
      { name: 'user', key: 'user:u', limit: 10, windowMs: HOUR, failureMode: 'fail_open' },
      { name: 'api_key', key: 'api_key:k', limit: 5, windowMs: HOUR },
    ];
    const check = await checkAll(limiter, open);
    expect(check).to.include({ allowed: true, degraded: true });
    expect(check.results.map((r) => r.decision.degraded)).to.deep.equal([true, true]);
    rlMetrics.recordDecisions(decisionRecords(check));
    expect(
      await metricValue(metrics, 'keen_ratelimit_decisions_total', { policy: 'user', outcome: 'degraded' }),
    ).to.equal(1);

    const closed = [open[0]!, { ...open[1]!, failureMode: 'fail_closed' as const }];
    const err = await rejection(checkAll(limiter, closed));
    expect((err as GatewayError).code).to.equal('UNAVAILABLE');
  });

  it('argument errors are bugs: never hidden by the failure policy, never counted', async () => {
    const limiter = new ResilientRateLimiter({ limiter: backend, metrics: rlMetrics, mode: 'fail_open' });
    expect(await rejection(limiter.consume('k', -1, HOUR))).to.be.instanceOf(RangeError);
    expect(await metricValue(metrics, 'keen_ratelimit_backend_failures_total', { mode: 'fail_open' })).to.equal(0);
  });
});

describe('resilient limiter on a healthy backend', () => {
  it('passes decisions through untouched', async () => {
    const metrics = new RateLimitMetrics(new Metrics({ defaultMetrics: false }));
    const limiter = new ResilientRateLimiter({ limiter: new MemoryRateLimiter(), metrics });
    expect(limiter.mode).to.equal('fail_closed');
    expect(await limiter.consume('k', 1, HOUR)).to.include({ allowed: true, remaining: 0 });
    const d = await limiter.consume('k', 1, HOUR);
    expect(d.allowed).to.equal(false);
    expect(d.degraded).to.equal(undefined);
    await limiter.close();
  });
});

describeRedis('limiter recovery after a Redis outage, without a restart', () => {
  let proxy: TcpProxy;
  let client: Redis;
  let cleanup: Redis;
  const log = new LogSpy();

  before(async () => {
    const target = new URL(TEST_REDIS_URL!);
    proxy = new TcpProxy(target.hostname, Number(target.port || 6379));
    const port = await proxy.start();
    client = createRedis(`redis://127.0.0.1:${port}`, log, { maxReconnectDelayMs: 100 });
    cleanup = testRedis();
    await Promise.all([ready(client), ready(cleanup)]);
  });
  after(async () => {
    client.disconnect();
    await proxy.stop();
    await deleteKeys(cleanup, RUN_PREFIX);
    cleanup.disconnect();
  });

  it('fails while Redis is unreachable (503 or degraded by mode) and decides again once it is back', async () => {
    const metrics = new RateLimitMetrics(new Metrics({ defaultMetrics: false }));
    const backend = new RedisRateLimiter({ redis: client, prefix: freshPrefix() });
    const closed = new ResilientRateLimiter({ limiter: backend, metrics, mode: 'fail_closed' });
    const open = new ResilientRateLimiter({ limiter: backend, metrics, mode: 'fail_open' });

    expect(await closed.consume('k', 3, HOUR)).to.include({ allowed: true, remaining: 2 });

    await proxy.stop();
    // The client notices the cut connection; from then on every call fails fast.
    const works = (): Promise<boolean> =>
      backend.peek('k', 3, HOUR).then(
        () => true,
        () => false,
      );
    await eventually(async () => !(await works()));
    expect(await rejection(backend.consume('k', 3, HOUR))).to.be.instanceOf(RateLimitBackendError);
    expect(await rejection(closed.consume('k', 3, HOUR))).to.be.instanceOf(GatewayError);
    expect((await open.consume('k', 3, HOUR)).degraded).to.equal(true);

    await proxy.start(); // same port
    await eventually(works);
    expect(log.warnings).to.have.length.greaterThan(0);
    expect(log.infos).to.include('redis connection restored');
    // The budget survived the outage (it lives in Redis) and the failed calls took nothing.
    expect(await closed.consume('k', 3, HOUR)).to.deep.include({ allowed: true, remaining: 1 });
    expect((await open.consume('k', 3, HOUR)).degraded).to.equal(undefined);
  });
});
