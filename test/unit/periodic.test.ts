import { expect } from 'chai';
import sinon from 'sinon';
import { Periodic } from '../../daemon/periodic.js';

describe('Periodic', () => {
  let clock: sinon.SinonFakeTimers;
  beforeEach(() => {
    clock = sinon.useFakeTimers();
  });
  afterEach(() => clock.restore());

  /** A pass that ends when the test says so. */
  function gated() {
    let passes = 0;
    let open: (() => void) | null = null;
    const periodic = new Periodic(async () => {
      passes++;
      await new Promise<void>((r) => (open = r));
      return passes;
    });
    return { periodic, passes: () => passes, finish: () => open?.() };
  }

  it('shares the pass in flight instead of starting another, and starts a new one after it ends', async () => {
    const g = gated();
    const a = g.periodic.run();
    const b = g.periodic.run();
    expect(a).to.equal(b);
    expect(g.passes()).to.equal(1);
    g.finish();
    expect(await a).to.equal(1);
    const c = g.periodic.run();
    expect(c).to.not.equal(a);
    expect(g.passes()).to.equal(2);
    g.finish();
    await c;
  });

  it('ticks every interval, at once with `immediately`, after `firstDelayMs` when given; a second start is ignored', () => {
    const ticks: string[] = [];
    const plain = new Periodic(async () => undefined);
    plain.start(100, { tick: () => void ticks.push('plain') });
    plain.start(100, { tick: () => void ticks.push('again') });
    const now = new Periodic(async () => undefined);
    now.start(100, { immediately: true, tick: () => void ticks.push('now') });
    const late = new Periodic(async () => undefined);
    late.start(100, { firstDelayMs: 250, tick: () => void ticks.push('late') });
    expect(ticks).to.deep.equal(['now']);
    clock.tick(100);
    expect(ticks).to.deep.equal(['now', 'plain', 'now']);
    clock.tick(150);
    expect(ticks.filter((t) => t === 'late')).to.have.length(1);
    clock.tick(100);
    expect(ticks.filter((t) => t === 'late')).to.have.length(2);
    expect(ticks).to.not.include('again');
    for (const p of [plain, now, late]) p.cancel();
    const before = ticks.length;
    clock.tick(1000);
    expect(ticks).to.have.length(before);
  });

  it('cancel() ends the timer at once; stop() also waits for the pass in flight', async () => {
    const g = gated();
    g.periodic.start(100);
    clock.tick(100);
    expect(g.passes()).to.equal(1);
    let stopped = false;
    const stopping = g.periodic.stop().then(() => (stopped = true));
    await Promise.resolve();
    expect(stopped).to.equal(false);
    g.finish();
    await stopping;
    expect(stopped).to.equal(true);
    clock.tick(1000);
    expect(g.passes()).to.equal(1);
  });
});
