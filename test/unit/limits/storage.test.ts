import { expect } from 'chai';
import type { Redis } from 'ioredis';
import { ManualClock } from '../../../daemon/clock.js';
import { MemoryRateLimiter } from '../../../daemon/limits/memory.js';
import { RedisRateLimiter } from '../../../daemon/limits/redis.js';
import type { RateLimitDecision } from '../../../daemon/limits/types.js';
import { deleteKeys, describeRedis, freshPrefix, prng, ready, RUN_PREFIX, testRedis } from './support.js';

const T0 = Date.UTC(2026, 0, 1);
const MINUTE = 60_000;

describe('memory limiter storage', () => {
  it('sweeps keys whose window has drained, on use, at most every sweepIntervalMs', async () => {
    const clock = new ManualClock(T0);
    const limiter = new MemoryRateLimiter({ clock, sweepIntervalMs: 5000 });
    for (let i = 0; i < 100; i++) await limiter.consume(`k${i}`, 10, MINUTE);
    expect(limiter.size).to.equal(100);

    clock.advance(MINUTE + 999); // the last bucket leaves at T0 + 999 + 60000
    await limiter.consume('other', 10, MINUTE);
    expect(limiter.size).to.equal(1);
    await limiter.close();
    expect(limiter.size).to.equal(0);
  });

  it('keeps keys that still count, and drops stale buckets of a busy key', async () => {
    const clock = new ManualClock(T0);
    const limiter = new MemoryRateLimiter({ clock, sweepIntervalMs: 1000 });
    await limiter.consume('old', 10, MINUTE);
    clock.advance(30_000);
    await limiter.consume('young', 10, MINUTE);
    clock.advance(31_000); // 'old' has drained, 'young' has not
    await limiter.consume('young', 10, MINUTE);
    expect(limiter.size).to.equal(1);
    // One busy key never holds more than about B buckets, whatever its history.
    for (let i = 0; i < 600; i++) {
      clock.advance(1000);
      await limiter.consume('young', 1000, MINUTE);
    }
    // 61 one-second buckets overlap the window (the oldest partly, counted whole).
    expect((await limiter.peek('young', 1000, MINUTE)).remaining).to.equal(1000 - 61);
    const entries = (limiter as unknown as { entries: Map<string, { buckets: Map<number, number> }> }).entries;
    expect(entries.get('young')!.buckets.size).to.be.at.most(61);
  });
});

describeRedis('redis limiter storage', () => {
  let redis: Redis;
  before(async () => {
    redis = testRedis();
    await ready(redis);
  });
  after(async () => {
    await deleteKeys(redis, RUN_PREFIX);
    redis.disconnect();
  });

  it('keeps each key in one prefixed HASH that expires when its window drains', async () => {
    const clock = new ManualClock(T0 + 500);
    const prefix = freshPrefix();
    const limiter = new RedisRateLimiter({ redis, prefix, clock });
    const d = await limiter.consume('user:usr_1', 5, MINUTE, 2);
    const key = `${prefix}user:usr_1`;
    expect(limiter.redisKey('user:usr_1')).to.equal(key);
    expect(await redis.type(key)).to.equal('hash');
    expect(await redis.hgetall(key)).to.deep.equal({ [String((T0 + 500 - 500) / 1000)]: '2', s: '60000/60' });
    const pttl = await redis.pttl(key);
    expect(pttl).to.be.greaterThan(0);
    expect(pttl).to.be.at.most(d.resetMs);
    // A peek writes nothing, so it neither creates keys nor extends their life.
    await limiter.peek('user:usr_2', 5, MINUTE);
    expect(await redis.exists(`${prefix}user:usr_2`)).to.equal(0);
  });

  it('uses the default prefix keen:rl: and Redis server time when no clock is given', async () => {
    const limiter = new RedisRateLimiter({ redis });
    const key = `${RUN_PREFIX}default-prefix`;
    try {
      const d = await limiter.consume(key, 3, MINUTE);
      expect(d).to.include({ allowed: true, remaining: 2 });
      expect(await redis.exists(`keen:rl:${key}`)).to.equal(1);
      // Server time is now-ish: the key lives about a window.
      expect(await redis.pttl(`keen:rl:${key}`)).to.be.within(MINUTE - 5000, MINUTE + 1000);
    } finally {
      await redis.del(`keen:rl:${key}`);
    }
  });

  it('deletes stale bucket fields when it writes', async () => {
    const clock = new ManualClock(T0);
    const prefix = freshPrefix();
    const limiter = new RedisRateLimiter({ redis, prefix, clock });
    for (let i = 0; i < 200; i++) {
      await limiter.consume('k', 1000, MINUTE);
      clock.advance(1000);
    }
    // 60 or 61 buckets overlap a window, plus the layout field.
    expect(await redis.hlen(`${prefix}k`)).to.be.at.most(62);
  });

  it('shares one budget across two connections (two daemons): exactly N allowed', async () => {
    const other = testRedis();
    await ready(other);
    const prefix = freshPrefix();
    const a = new RedisRateLimiter({ redis, prefix });
    const b = new RedisRateLimiter({ redis: other, prefix });
    try {
      const decisions = await Promise.all(
        Array.from({ length: 300 }, (_, i) => (i % 2 === 0 ? a : b).consume('shared', 50, 3_600_000)),
      );
      expect(decisions.filter((d) => d.allowed)).to.have.length(50);
      expect((await b.peek('shared', 50, 3_600_000)).remaining).to.equal(0);
    } finally {
      other.disconnect();
    }
  });

  it('gives the same decisions as the memory limiter for one random sequence', async () => {
    const clockA = new ManualClock(T0 + 123);
    const clockB = new ManualClock(T0 + 123);
    const memory = new MemoryRateLimiter({ clock: clockA, buckets: 12 });
    const shared = new RedisRateLimiter({ redis, prefix: freshPrefix(), clock: clockB, buckets: 12 });
    const random = prng(42);
    const keys = ['a', 'b', 'c'];
    const windows = [1000, 7001, 60_000];
    const seen: Array<[RateLimitDecision | boolean, RateLimitDecision | boolean]> = [];
    for (let i = 0; i < 1200; i++) {
      const step = Math.floor(random() * (random() < 0.9 ? 300 : 20_000));
      clockA.advance(step);
      clockB.advance(step);
      const k = Math.floor(random() * keys.length);
      const key = keys[k]!;
      const windowMs = windows[k]!;
      const limit = 3 + k * 4;
      const cost = 1 + Math.floor(random() * 3);
      const op = random();
      if (op < 0.6) {
        seen.push([await memory.consume(key, limit, windowMs, cost), await shared.consume(key, limit, windowMs, cost)]);
      } else if (op < 0.8) {
        seen.push([await memory.peek(key, limit, windowMs, cost), await shared.peek(key, limit, windowMs, cost)]);
      } else if (op < 0.98) {
        const batch = keys.map((name, j) => ({ key: name, limit: 3 + j * 4, windowMs: windows[j]!, cost }));
        const [x, y] = [await memory.consumeAll(batch), await shared.consumeAll(batch)];
        seen.push([x.allowed, y.allowed]);
        x.decisions.forEach((d, j) => seen.push([d, y.decisions[j]!]));
      } else {
        await memory.reset(key);
        await shared.reset(key);
      }
    }
    for (const [i, [m, r]] of seen.entries()) expect(r, `decision ${i}`).to.deep.equal(m);
    const allowed = seen.filter(([m]) => typeof m === 'object' && m.allowed).length;
    expect(allowed).to.be.greaterThan(100);
    expect(seen.length - allowed).to.be.greaterThan(100);
  });
});
