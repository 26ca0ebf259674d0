import { expect } from 'chai';
import { ManualClock } from '../../../daemon/clock.js';
import { createRateLimiter } from '../../../daemon/limits/factory.js';
import { RateLimitMetrics } from '../../../daemon/limits/metrics.js';
import { ResilientRateLimiter } from '../../../daemon/limits/resilient.js';
import { Metrics } from '../../../daemon/metrics.js';
import { createRedis } from '../../../daemon/redis.js';
import { LogSpy } from './support.js';

describe('createRateLimiter', () => {
  it('builds the in-process limiter behind the failure policy when no Redis is configured', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const limiter = createRateLimiter({
      redis: null,
      metrics: new RateLimitMetrics(metrics),
      clock: new ManualClock(),
    });
    expect(limiter).to.be.instanceOf(ResilientRateLimiter);
    expect(limiter.mode).to.equal('fail_closed');
    expect(await limiter.consume('k', 2, 1000)).to.include({ allowed: true, remaining: 1 });
    // Both counters are exported from the start.
    const text = await metrics.registry.metrics();
    expect(text).to.include('keen_ratelimit_backend_failures_total{mode="fail_open"} 0');
    expect(text).to.include('# TYPE keen_ratelimit_decisions_total counter');
  });

  it('builds the Redis limiter when given a client, with the requested default mode', async () => {
    const client = createRedis('redis://127.0.0.1:1', new LogSpy());
    try {
      const limiter = createRateLimiter({
        redis: client,
        metrics: new RateLimitMetrics(new Metrics({ defaultMetrics: false })),
        mode: 'fail_open',
      });
      expect((await limiter.consume('k', 2, 1000)).degraded).to.equal(true);
    } finally {
      client.disconnect();
    }
  });
});
