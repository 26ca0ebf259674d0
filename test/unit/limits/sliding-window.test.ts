import { expect } from 'chai';
import { ManualClock } from '../../../daemon/clock.js';
import type { BatchRateLimiter } from '../../../daemon/limits/types.js';
import { describeShared } from '../../helpers/backends.js';
import { limiterFactory, prng } from './support.js';

// 2026-01-01T00:00:00Z: a multiple of 60 s, so with windowMs 60 s and 60 buckets
// the buckets are the whole seconds and T0 starts one.
const T0 = Date.UTC(2026, 0, 1);
const MINUTE = 60_000;

describeShared('sliding-window limiter', (backend) => {
  const make = limiterFactory(backend);
  let clock: ManualClock;
  let limiter: BatchRateLimiter;

  beforeEach(() => {
    clock = new ManualClock(T0 + 500);
    limiter = make({ clock });
  });
  afterEach(() => limiter.close());

  it('allows up to the limit, then denies without taking anything', async () => {
    for (let i = 0; i < 5; i++) {
      const d = await limiter.consume('k', 5, MINUTE);
      expect(d.allowed, `request ${i}`).to.equal(true);
      expect(d.remaining).to.equal(4 - i);
      expect(d.retryAfterMs).to.equal(0);
    }
    for (let i = 0; i < 3; i++) {
      const d = await limiter.consume('k', 5, MINUTE);
      expect(d.allowed).to.equal(false);
      expect(d.remaining).to.equal(0);
      expect(d.limit).to.equal(5);
    }
    // Denials took nothing: once the first bucket leaves, exactly 5 fit again.
    clock.set(T0 + 1000 + MINUTE - 1);
    expect((await limiter.peek('k', 5, MINUTE)).remaining).to.equal(5);
  });

  it('charges cost > 1 and denies a cost that does not fit while smaller ones still do', async () => {
    expect(await limiter.consume('k', 10, MINUTE, 4)).to.include({ allowed: true, remaining: 6 });
    expect(await limiter.consume('k', 10, MINUTE, 4)).to.include({ allowed: true, remaining: 2 });
    expect(await limiter.consume('k', 10, MINUTE, 3)).to.include({ allowed: false, remaining: 2 });
    expect(await limiter.consume('k', 10, MINUTE, 2)).to.include({ allowed: true, remaining: 0 });
  });

  it('reports exact remaining, reset and retry-after from the bucket boundaries', async () => {
    // A bucket is 1 s. A request at T0+500 lands in bucket [T0, T0+1000), which
    // counts until its last millisecond leaves the window: T0 + 999 + 60000.
    let d = await limiter.consume('k', 3, MINUTE);
    expect(d).to.deep.equal({ allowed: true, limit: 3, remaining: 2, resetMs: 60_499, retryAfterMs: 0 });
    clock.advance(10_000); // T0 + 10500
    d = await limiter.consume('k', 3, MINUTE);
    expect(d).to.deep.equal({ allowed: true, limit: 3, remaining: 1, resetMs: 60_499, retryAfterMs: 0 });
    clock.advance(10_000); // T0 + 20500
    d = await limiter.consume('k', 3, MINUTE);
    expect(d).to.deep.equal({ allowed: true, limit: 3, remaining: 0, resetMs: 60_499, retryAfterMs: 0 });

    clock.set(T0 + 21_500);
    d = await limiter.consume('k', 3, MINUTE);
    // One unit fits when the first bucket leaves (T0 + 60999); the last leaves at T0 + 80999.
    expect(d).to.deep.equal({ allowed: false, limit: 3, remaining: 0, resetMs: 59_499, retryAfterMs: 39_499 });
    // Two units need the second bucket gone too (T0 + 70999).
    d = await limiter.consume('k', 3, MINUTE, 2);
    expect(d).to.deep.equal({ allowed: false, limit: 3, remaining: 0, resetMs: 59_499, retryAfterMs: 49_499 });

    clock.set(T0 + 60_998);
    d = await limiter.consume('k', 3, MINUTE);
    expect(d).to.include({ allowed: false, retryAfterMs: 1 });
    clock.set(T0 + 60_999);
    d = await limiter.consume('k', 3, MINUTE);
    expect(d).to.deep.equal({ allowed: true, limit: 3, remaining: 0, resetMs: 60_000, retryAfterMs: 0 });
  });

  it('handles a window that B does not divide (fractional bucket width, floored consistently)', async () => {
    // windowMs 1000 with 60 buckets: bucket i starts at ceil(i * 1000 / 60) ms.
    clock.set(T0);
    const first = await limiter.consume('k', 2, 1000);
    // Bucket floor(T0*60/1000) = T0*0.06 starts at T0 and ends before ceil(T0+16.67) = T0+17.
    expect(first).to.include({ allowed: true, remaining: 1, resetMs: 17 + 1000 - 1 });
    await limiter.consume('k', 2, 1000);
    const denied = await limiter.consume('k', 2, 1000);
    expect(denied).to.include({ allowed: false, retryAfterMs: 1016 });
    clock.set(T0 + 1015);
    expect((await limiter.consume('k', 2, 1000)).allowed).to.equal(false);
    clock.set(T0 + 1016);
    expect(await limiter.consume('k', 2, 1000, 2)).to.include({ allowed: true, remaining: 0 });
  });

  it('denies a cost larger than the limit with a whole window to wait', async () => {
    const d = await limiter.consume('k', 3, MINUTE, 4);
    expect(d).to.deep.equal({ allowed: false, limit: 3, remaining: 3, resetMs: 0, retryAfterMs: MINUTE });
  });

  it('peek answers like consume without taking anything', async () => {
    for (let i = 0; i < 4; i++) expect(await limiter.peek('k', 2, MINUTE)).to.include({ allowed: true, remaining: 2 });
    await limiter.consume('k', 2, MINUTE, 2);
    const d = await limiter.peek('k', 2, MINUTE);
    expect(d).to.deep.equal({ allowed: false, limit: 2, remaining: 0, resetMs: 60_499, retryAfterMs: 60_499 });
    expect(await limiter.peek('k', 5, MINUTE, 3)).to.include({ allowed: true, remaining: 3 });
    expect(await limiter.peek('k', 5, MINUTE, 4)).to.include({ allowed: false, remaining: 3 });
  });

  it('reset forgets a key and leaves the others alone', async () => {
    await limiter.consume('a', 1, MINUTE);
    await limiter.consume('b', 1, MINUTE);
    await limiter.reset('a');
    expect((await limiter.consume('a', 1, MINUTE)).allowed).to.equal(true);
    expect((await limiter.consume('b', 1, MINUTE)).allowed).to.equal(false);
    await limiter.reset('never-used');
  });

  it('starts a key over when its window changes (a config reload)', async () => {
    await limiter.consume('k', 1, MINUTE);
    expect((await limiter.consume('k', 1, MINUTE)).allowed).to.equal(false);
    expect((await limiter.consume('k', 1, 2 * MINUTE)).allowed).to.equal(true);
  });

  it('consumeAll charges every key or none', async () => {
    await limiter.consume('b', 2, MINUTE, 2);
    const denied = await limiter.consumeAll([
      { key: 'a', limit: 5, windowMs: MINUTE },
      { key: 'b', limit: 2, windowMs: MINUTE },
    ]);
    expect(denied.allowed).to.equal(false);
    expect(denied.decisions[0]).to.include({ allowed: true, remaining: 5 });
    expect(denied.decisions[1]).to.include({ allowed: false, remaining: 0 });
    expect((await limiter.peek('a', 5, MINUTE)).remaining).to.equal(5);

    const allowed = await limiter.consumeAll([
      { key: 'a', limit: 5, windowMs: MINUTE, cost: 2 },
      { key: 'c', limit: 3, windowMs: MINUTE },
    ]);
    expect(allowed.allowed).to.equal(true);
    expect(allowed.decisions.map((d) => d.remaining)).to.deep.equal([3, 2]);
    await limiter.reset('b');
  });

  it('rejects arguments no policy produces, before touching the backend', async () => {
    for (const [limit, windowMs, cost] of [
      [-1, MINUTE, 1],
      [1.5, MINUTE, 1],
      [5, 0, 1],
      [5, MINUTE, 0],
      [5, MINUTE, 1.5],
    ]) {
      let caught: unknown = null;
      await limiter.consume('k', limit!, windowMs!, cost!).catch((err: unknown) => (caught = err));
      expect(caught, `${limit}/${windowMs}/${cost}`).to.be.instanceOf(RangeError);
    }
    let dup: unknown = null;
    await limiter
      .consumeAll([
        { key: 'k', limit: 1, windowMs: 1 },
        { key: 'k', limit: 1, windowMs: 1 },
      ])
      .catch((err: unknown) => (dup = err));
    expect(dup).to.be.instanceOf(RangeError);
  });

  it('never accepts more than the limit in any interval of windowMs (bursts across window edges)', async () => {
    const windowMs = 10_000;
    const limit = 20;
    const random = prng(20260101);
    const accepted: Array<[number, number]> = [];
    let denied = 0;
    clock.set(T0 + 7);
    for (let i = 0; i < 1500; i++) {
      // Mostly bursts near window edges, sometimes long pauses.
      const r = random();
      clock.advance(
        r < 0.6 ? Math.floor(random() * 20) : r < 0.95 ? Math.floor(random() * 900) : Math.floor(random() * 12_000),
      );
      const cost = 1 + Math.floor(random() * 3);
      const d = await limiter.consume('burst', limit, windowMs, cost);
      if (d.allowed) accepted.push([clock.now(), cost]);
      else denied += 1;
    }
    expect(accepted.length).to.be.greaterThan(100);
    expect(denied).to.be.greaterThan(100);
    // The busiest interval (s - windowMs, s] always ends at an accepted request.
    let busiest = 0;
    for (const [end] of accepted) {
      let sum = 0;
      for (const [t, cost] of accepted) if (t > end - windowMs && t <= end) sum += cost;
      busiest = Math.max(busiest, sum);
    }
    expect(busiest).to.be.at.most(limit);
    // And the window is not needlessly strict: somewhere the full limit was used.
    expect(busiest).to.equal(limit);
  });

  it('lets exactly `limit` of 500 concurrent requests through', async () => {
    const real = make({ clock: null });
    const decisions = await Promise.all(Array.from({ length: 500 }, () => real.consume('hot', 100, 3_600_000)));
    expect(decisions.filter((d) => d.allowed)).to.have.length(100);
    const remaining = decisions
      .filter((d) => d.allowed)
      .map((d) => d.remaining)
      .sort((a, b) => a - b);
    expect(remaining).to.deep.equal(Array.from({ length: 100 }, (_, i) => i));
    await real.close();
  });
});
