import { expect } from 'chai';
import { ManualClock } from '../../../daemon/clock.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildUser } from '../../helpers/factories.js';
import { prng } from '../../unit/limits/support.js';

const HOUR = 3_600_000;
const LIMIT = 10;

/**
 * The sliding window over HTTP, on the in-process limiter with a manual clock:
 * a burst at the end of one clock hour and another at the start of the next
 * must not get 2x the limit through, as a fixed window would let them.
 */
describe('the window edge over HTTP [memory, manual clock]', () => {
  const clock = new ManualClock(Date.UTC(2026, 0, 5, 10, 0, 0));
  let d: TestDaemon;
  let key: string;
  /** Times (ms) of every request the daemon let through, in this suite. */
  const accepted: number[] = [];

  before(async () => {
    d = await startDaemon({ clock, config: { tiers: { individual: { requests_per_hour: LIMIT } } } });
    const u = await buildUser(d, { tier: 'individual' });
    // Made through the service, not the API: the key's creation must not spend the user's budget.
    key = (await d.container.users.createApiKey(null, u.user, { name: 'edge' })).key;
  });
  after(async () => d?.stop());

  /** `n` concurrent requests at the clock's current time; returns the responses. */
  async function burst(n: number) {
    const at = clock.now();
    const rs = await Promise.all(Array.from({ length: n }, () => d.api.get('/v1/me', { apiKey: key })));
    for (const r of rs) {
      expect([200, 429], r.text).to.include(r.status);
      if (r.status === 200) accepted.push(at);
    }
    return rs;
  }
  const allowed = (rs: Array<{ status: number }>) => rs.filter((r) => r.status === 200).length;

  /** At most LIMIT accepted requests in any interval (t - HOUR, t]. */
  function assertNeverOverLimit(): void {
    const ts = [...accepted].sort((x, y) => x - y);
    let lo = 0;
    for (let hi = 0; hi < ts.length; hi++) {
      while (ts[lo]! <= ts[hi]! - HOUR) lo++;
      expect(hi - lo + 1, `requests in the hour ending ${new Date(ts[hi]!).toISOString()}`).to.be.at.most(LIMIT);
    }
  }

  it('a burst at 10:59:59.5 and another at 11:00:00.5: the limit once, not twice; Retry-After is exact to the second', async () => {
    clock.set(Date.UTC(2026, 0, 5, 10, 59, 59, 500));
    const first = await burst(2 * LIMIT);
    expect(allowed(first)).to.equal(LIMIT);

    clock.set(Date.UTC(2026, 0, 5, 11, 0, 0, 500));
    const second = await burst(2 * LIMIT);
    expect(allowed(second), 'a fixed window would allow a second full burst here').to.equal(0);
    const retryAfter = Number(second[0]!.headers.get('retry-after'));
    expect(second[0]!.body.error.details).to.include({ limit: 'user', max: LIMIT, current: LIMIT });
    expect(retryAfter).to.be.within(3590, 3660);

    // One second before Retry-After the budget is still spent; at Retry-After it is back in full.
    const t = clock.now();
    clock.set(t + (retryAfter - 1) * 1000);
    expect(allowed(await burst(1))).to.equal(0);
    clock.set(t + retryAfter * 1000);
    const third = await burst(2 * LIMIT);
    expect(allowed(third)).to.equal(LIMIT);
    assertNeverOverLimit();
  });

  it('a seeded random run of bursts around minute and hour edges never exceeds the limit in any hour', async () => {
    const random = prng(20260105);
    let t = Date.UTC(2026, 0, 5, 16, 0, 0);
    let total = 0;
    for (let i = 0; i < 40; i++) {
      // Jump to just before or after a sub-bucket (minute) or hour boundary.
      const step = random() < 0.3 ? HOUR : 60_000 * (1 + Math.floor(random() * 20));
      t = Math.ceil((t + step) / 60_000) * 60_000 + Math.round((random() - 0.5) * 2000);
      clock.set(t);
      total += allowed(await burst(1 + Math.floor(random() * LIMIT)));
    }
    expect(total, 'the run let requests through at all').to.be.greaterThan(LIMIT);
    assertNeverOverLimit();
  });
});
