import { expect } from 'chai';
import type { Redis } from 'ioredis';
import { RateLimitMetrics } from '../../../daemon/limits/metrics.js';
import { RedisRateLimiter } from '../../../daemon/limits/redis.js';
import { ResilientRateLimiter } from '../../../daemon/limits/resilient.js';
import { Metrics } from '../../../daemon/metrics.js';
import { createRedis } from '../../../daemon/redis.js';
import { TEST_REDIS_URL } from '../../helpers/env.js';
import { FaultProxy } from '../../helpers/fault-proxy.js';
import {
  deleteKeys,
  describeRedis,
  eventually,
  freshPrefix,
  LogSpy,
  ready,
  RUN_PREFIX,
  testRedis,
} from '../../unit/limits/support.js';

const HOUR = 3_600_000;
/** The limiter's client gives up on a command after this; the limiter's calls then fail open. */
const COMMAND_TIMEOUT_MS = 300;

/** Units counted in one limiter key, read straight from Redis. */
async function units(redis: Redis, key: string): Promise<number> {
  const fields = await redis.hgetall(key);
  return Object.entries(fields)
    .filter(([field]) => field !== 's')
    .reduce((sum, [, v]) => sum + Number(v), 0);
}

/**
 * docs/rate-limits.md: "Requests let through during the outage are not counted
 * afterwards." A partition (a link that stays open but carries nothing) is the
 * hard case: the limiter's commands are already written to the socket, or kept
 * by the client to be resent after a reconnect, when the caller gives up and
 * fails open. When the link heals, Redis must not run them.
 */
describeRedis('rate-limit calls that failed open during a partition are not counted when it heals', () => {
  let proxy: FaultProxy;
  let client: Redis;
  let direct: Redis;

  before(async () => {
    proxy = FaultProxy.for(TEST_REDIS_URL!);
    await proxy.start();
    client = createRedis(proxy.url(TEST_REDIS_URL!), new LogSpy(), {
      commandTimeoutMs: COMMAND_TIMEOUT_MS,
      maxReconnectDelayMs: 100,
    });
    direct = testRedis();
    await Promise.all([ready(client), ready(direct)]);
  });
  afterEach(() => proxy.resume());
  after(async () => {
    client.disconnect();
    await proxy.close();
    await deleteKeys(direct, RUN_PREFIX);
    direct.disconnect();
  });

  function limiters() {
    const prefix = freshPrefix();
    const backend = new RedisRateLimiter({ redis: client, prefix });
    const metrics = new RateLimitMetrics(new Metrics({ defaultMetrics: false }));
    const open = new ResilientRateLimiter({ limiter: backend, metrics, mode: 'fail_open' });
    const works = (): Promise<boolean> =>
      backend.peek('probe', 1, HOUR).then(
        () => true,
        () => false,
      );
    return { prefix, backend, open, works };
  }

  it('a blackholed link: calls already written to the socket do nothing when it carries traffic again', async () => {
    const { prefix, open, works } = limiters();
    expect(await open.consume('k', 10, HOUR)).to.include({ allowed: true, remaining: 9 });

    proxy.blackhole();
    const started = Date.now();
    for (let i = 0; i < 5; i++) expect((await open.consume('k', 10, HOUR)).degraded, `call ${i}`).to.equal(true);
    const batch = await open.consumeAll([
      { key: 'k', limit: 10, windowMs: HOUR },
      { key: 'k2', limit: 10, windowMs: HOUR },
    ]);
    expect(batch.degraded).to.equal(true);
    await open.refund('k', HOUR, 1);
    // Each call waited for the command timeout, no longer.
    expect(Date.now() - started).to.be.below(7 * (COMMAND_TIMEOUT_MS + 500));

    proxy.resume();
    // One connection, commands in order: once a new call is answered, every older one has run (or not).
    await eventually(works);
    expect(await units(direct, `${prefix}k`), 'failed-open calls counted after the link healed').to.equal(1);
    expect(await units(direct, `${prefix}k2`)).to.equal(0);
    const next = await open.consume('k', 10, HOUR);
    expect(next).to.include({ allowed: true, remaining: 8 });
    expect(next.degraded).to.equal(undefined);
  });

  it('a link cut after the calls timed out: what the client resends after reconnecting does nothing either', async () => {
    const { prefix, open, works } = limiters();
    expect(await open.consume('k', 10, HOUR)).to.include({ allowed: true, remaining: 9 });

    proxy.blackhole();
    for (let i = 0; i < 3; i++) expect((await open.consume('k', 10, HOUR)).degraded).to.equal(true);
    // The partition ends with the connection gone: ioredis keeps its unanswered commands and resends them on reconnect.
    proxy.cut();
    await eventually(async () => client.status !== 'ready');
    proxy.resume();
    await eventually(works);
    expect(await units(direct, `${prefix}k`), 'resent failed-open calls were counted').to.equal(1);
    expect(await open.consume('k', 10, HOUR)).to.include({ allowed: true, remaining: 8 });
  });

  for (const skewMs of [-5000, 5000]) {
    it(`a daemon clock ${skewMs < 0 ? 'behind' : 'ahead of'} Redis's by ${Math.abs(skewMs)} ms: decisions still count, failed-open calls still do not`, async () => {
      const realNow = Date.now;
      Date.now = () => realNow() + skewMs;
      try {
        const { prefix, open, works } = limiters();
        // The first call teaches the limiter Redis's clock (behind: a deadline that had passed, sent again at once).
        const first = await open.consume('k', 10, HOUR);
        expect(first).to.include({ allowed: true, remaining: 9 });
        expect(first.degraded).to.equal(undefined);
        expect(await open.consume('k', 10, HOUR)).to.include({ allowed: true, remaining: 8 });

        proxy.blackhole();
        for (let i = 0; i < 3; i++) expect((await open.consume('k', 10, HOUR)).degraded).to.equal(true);
        proxy.resume();
        await eventually(works);
        expect(await units(direct, `${prefix}k`)).to.equal(2);
      } finally {
        Date.now = realNow;
      }
    });
  }

  it('a healthy link is unaffected: decisions count, and a slow but timely answer is used', async () => {
    const { prefix, backend } = limiters();
    for (let i = 0; i < 3; i++) await backend.consume('k', 10, HOUR);
    expect(await units(direct, `${prefix}k`)).to.equal(3);
    expect(
      await backend.consumeAll([
        { key: 'k', limit: 10, windowMs: HOUR },
        { key: 'k2', limit: 10, windowMs: HOUR, cost: 2 },
      ]),
    ).to.deep.include({ allowed: true });
    expect(await units(direct, `${prefix}k2`)).to.equal(2);
    await backend.refund('k2', HOUR, 1);
    expect(await units(direct, `${prefix}k2`)).to.equal(1);
    await backend.reset('k2');
    expect(await direct.exists(`${prefix}k2`)).to.equal(0);
  });
});
