import { expect } from 'chai';
import { LoginThrottle } from '../../../daemon/auth/login-throttle.js';
import { ManualClock } from '../../../daemon/clock.js';
import { GatewayError } from '../../../daemon/errors.js';
import type { BatchRateLimiter } from '../../../daemon/limits/types.js';
import { describeShared } from '../../helpers/backends.js';
import { limiterFactory } from '../limits/support.js';

const T0 = Date.UTC(2026, 0, 1);
const OPTIONS = { maxFailuresPerEmail: 5, maxFailuresPerIp: 50, windowSeconds: 900, maxBackoffSeconds: 800 };

/** The wait (s) a refused reservation asks for, or 0 when it was allowed (and then counted as a failure). */
async function tryFail(throttle: LoginThrottle, email: string, ip: string): Promise<number> {
  try {
    (await throttle.reserve(email, ip)).failed();
    return 0;
  } catch (err) {
    expect(err).to.be.instanceOf(GatewayError);
    expect((err as GatewayError).code).to.equal('LOGIN_THROTTLED');
    return Number((err as GatewayError).headers['Retry-After']);
  }
}

describeShared('LoginThrottle', (backend) => {
  const make = limiterFactory(backend);
  let clock: ManualClock;
  let limiter: BatchRateLimiter;
  let throttle: LoginThrottle;

  beforeEach(() => {
    clock = new ManualClock(T0);
    limiter = make({ clock });
    throttle = new LoginThrottle(limiter, OPTIONS);
  });
  afterEach(() => limiter.close());

  it('reserves atomically: of 40 concurrent reservations for one email, max_failures_per_email pass', async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 40 }, (_, i) => throttle.reserve('a@x.test', `10.0.0.${i}`)),
    );
    expect(results.filter((r) => r.status === 'fulfilled').length).to.equal(5);
  });

  it('gives a reservation back on success and on release, keeps it on failure', async () => {
    for (let i = 0; i < 20; i++) await (await throttle.reserve('a@x.test', '10.0.0.1')).succeeded();
    for (let i = 0; i < 20; i++) await (await throttle.reserve('a@x.test', '10.0.0.1')).release();
    for (let i = 0; i < 5; i++) expect(await tryFail(throttle, 'a@x.test', '10.0.0.1')).to.equal(0);
    expect(await tryFail(throttle, 'a@x.test', '10.0.0.1')).to.be.greaterThan(0);
    // release after failed() changes nothing
    const fresh = new LoginThrottle(limiter, OPTIONS);
    const attempt = await fresh.reserve('b@x.test', '10.0.0.2');
    attempt.failed();
    await attempt.release();
    for (let i = 0; i < 4; i++) expect(await tryFail(fresh, 'b@x.test', '10.0.0.2')).to.equal(0);
    expect(await tryFail(fresh, 'b@x.test', '10.0.0.2')).to.be.greaterThan(0);
  });

  it('email-wide: failures from other addresses grow the wait level by level, never beyond max_backoff_seconds', async () => {
    const waits: number[] = [];
    let ip = 0;
    // A patient attacker on ever new addresses, retrying as soon as it is told to.
    for (let step = 0; step < 40; step++) {
      const wait = await tryFail(throttle, 'a@x.test', `10.1.0.${ip++}`);
      if (wait > 0) {
        waits.push(wait);
        expect(wait).to.be.at.most(OPTIONS.maxBackoffSeconds);
        clock.advance(wait * 1000);
      }
    }
    // The first wait is the narrowest level (an eighth of the cap, rounded up to a sub-bucket).
    expect(waits[0]!).to.be.at.most(OPTIONS.maxBackoffSeconds / 8 + 3);
    expect(Math.max(...waits), waits.join(',')).to.be.greaterThan(OPTIONS.maxBackoffSeconds / 4);
    // The owner, on a new address, after the cap: in, whatever happened before.
    clock.advance(OPTIONS.maxBackoffSeconds * 1000);
    await (await throttle.reserve('a@x.test', '10.2.0.1')).succeeded();
  });

  it('per (email, address): strict for the whole window; unlock lifts the email-wide back-off but not that', async () => {
    for (let i = 0; i < 5; i++) expect(await tryFail(throttle, 'a@x.test', '10.0.0.1')).to.equal(0);
    const attacker = await tryFail(throttle, 'a@x.test', '10.0.0.1');
    expect(attacker).to.be.within(OPTIONS.windowSeconds - 1, OPTIONS.windowSeconds + 15);
    const owner = await tryFail(throttle, 'a@x.test', '10.0.0.2');
    expect(owner).to.be.within(1, OPTIONS.maxBackoffSeconds);
    await throttle.unlock('a@x.test');
    await (await throttle.reserve('a@x.test', '10.0.0.2')).succeeded();
    expect(await tryFail(throttle, 'a@x.test', '10.0.0.1')).to.be.greaterThan(OPTIONS.maxBackoffSeconds);
    // Past the cap but within the window: the email is free, the attacker's address is not.
    clock.advance(OPTIONS.maxBackoffSeconds * 1000 + 1000);
    expect(await tryFail(throttle, 'a@x.test', '10.0.0.1')).to.be.greaterThan(0);
    clock.advance((OPTIONS.windowSeconds - OPTIONS.maxBackoffSeconds + 15) * 1000);
    expect(await tryFail(throttle, 'a@x.test', '10.0.0.1')).to.equal(0);
  });

  it('per address: max_failures_per_ip over any emails', async () => {
    const t = new LoginThrottle(limiter, { ...OPTIONS, maxFailuresPerIp: 3 });
    for (let i = 0; i < 3; i++) expect(await tryFail(t, `u${i}@x.test`, '10.3.0.1')).to.equal(0);
    expect(await tryFail(t, 'u9@x.test', '10.3.0.1')).to.be.greaterThan(0);
    expect(await tryFail(t, 'u9@x.test', '10.3.0.2')).to.equal(0);
  });
});
