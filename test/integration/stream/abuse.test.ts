import net from 'node:net';
import { expect } from 'chai';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildUser } from '../../helpers/factories.js';
import { closeClients, connect, eventually, metric, refused, seedSession } from './support.js';

/** /health/live answers (bounded): the daemon is still serving. */
async function expectAlive(d: TestDaemon): Promise<void> {
  const r = await d.api.get('/health/live');
  expect(r.status).to.equal(200);
}

/** Sends raw bytes and returns whatever the server answered before closing (bounded). */
function rawExchange(port: number, payload: string, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve(got);
    };
    const timer = setTimeout(done, timeoutMs);
    s.on('data', (c) => (got += String(c)));
    s.on('close', done);
    s.on('error', done);
    s.write(payload);
  });
}

describe('stream: abuse', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon({});
  });
  afterEach(() => closeClients());
  after(async () => d?.stop());

  it('an upgrade with 2,000 headers is refused before any upgrade, and the daemon is fine', async () => {
    const u = await buildUser(d);
    const port = Number(new URL(d.url).port);
    const base = [
      'GET /v1/stream HTTP/1.1',
      'Host: 127.0.0.1',
      'Upgrade: websocket',
      'Connection: Upgrade',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      'Sec-WebSocket-Version: 13',
      `Authorization: Bearer ${u.token}`,
    ];
    // Short headers (under Node's 16 KiB header limit, so our own check decides) and long ones.
    const short = [...base, ...Array.from({ length: 2000 }, (_, i) => `x${i}: 1`)].join('\r\n') + '\r\n\r\n';
    const long =
      [...base, ...Array.from({ length: 2000 }, (_, i) => `x-header-${i}: some value`)].join('\r\n') + '\r\n\r\n';
    for (const request of [short, long]) {
      const answer = await rawExchange(port, request);
      expect(answer).to.match(/^HTTP\/1\.1 4\d\d /);
      expect(answer).not.to.include('101 Switching Protocols');
    }
    await expectAlive(d);
    await connect(d, { token: u.token });
  });

  it('a 10 MB message closes the connection with 1009', async () => {
    const u = await buildUser(d);
    const c = await connect(d, { token: u.token });
    c.ws.send('x'.repeat(10 * 1024 * 1024));
    expect((await c.closedWithin(10_000)).code).to.equal(1009);
    await expectAlive(d);
  });

  it('a flood of tiny fragments is closed with 1008 (too many fragments), long before the size limit', async () => {
    const u = await buildUser(d);
    const c = await connect(d, { token: u.token });
    for (let i = 0; i < 100_000 && c.ws.readyState === c.ws.OPEN; i++) c.ws.send('{', { fin: false });
    expect((await c.closedWithin(10_000)).code).to.equal(1008);
    // A message in a few fragments is fine.
    const ok = await connect(d, { token: u.token });
    ok.ws.send('{"type":', { fin: false });
    ok.ws.send('"nope"}', { fin: true });
    await ok.until((m) => m.some((x) => x.type === 'error'), 5_000, 'an error');
    expect(ok.errors()[0]!.error.code).to.equal('INVALID_FIELD');
    await expectAlive(d);
  });

  it('1,000 subscribe messages a second are bounded; the daemon stays responsive', async () => {
    const u = await buildUser(d);
    const c = await connect(d, { token: u.token });
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 1000; i++)
        c.send({ type: 'subscribe', session_id: `ses_${String(round * 1000 + i).padStart(26, '0')}`, after: 0 });
      await expectAlive(d);
      await new Promise((res) => setTimeout(res, 1000));
    }
    await c.until((m) => m.some((x) => x.error?.code === 'RATE_LIMITED'), 5_000, 'a rate-limit error');
    const handled = c.errors().filter((e) => e.error.code === 'NOT_FOUND').length;
    // A burst of 50 and 20 a second: far below 2,000 (generous bound for a slow machine).
    expect(handled).to.be.below(300);
    expect(c.errors().filter((e) => e.error.code === 'RATE_LIMITED').length).to.be.at.most(10);
    expect(c.ws.readyState).to.equal(c.ws.OPEN);
    // Still a working connection once the budget refills.
    await new Promise((res) => setTimeout(res, 1500));
    const own = await seedSession(d, u, 3);
    c.send({ type: 'subscribe', session_id: own, after: 0 });
    await c.untilEnd(own);
  });

  it('caps subscriptions per connection', async () => {
    d.container.stream.tune({ maxSubscriptions: 3, messageBurst: 100 });
    try {
      const u = await buildUser(d);
      const ids = await Promise.all([1, 2, 3, 4].map(() => seedSession(d, u, 2, { status: 'running' })));
      const c = await connect(d, { token: u.token });
      for (const id of ids) c.send({ type: 'subscribe', session_id: id, after: 0 });
      await c.until((m) => m.some((x) => x.type === 'error'), 5_000, 'an error');
      expect(c.errors().map((e) => [e.error.code, e.session_id])).to.deep.equal([['RATE_LIMITED', ids[3]]]);
    } finally {
      d.container.stream.tune({ maxSubscriptions: 100, messageBurst: 50 });
    }
  });

  it('a client that never reads is closed with 1013 before its backlog is built, and memory stays bounded', async () => {
    d.container.stream.tune({ slowCloseGraceMs: 15_000 });
    try {
      const u = await buildUser(d);
      // 3,000 events of 8 KB: about 24 MB that the client will not read.
      const id = await seedSession(d, u, 3000, { dataBytes: 8 * 1024 });
      const c = await connect(d, { token: u.token });
      const sentBefore = await metric(d, 'keen_stream_messages_sent_total', { kind: 'event' });
      const heapBefore = process.memoryUsage().heapUsed;
      c.ws.pause();
      c.send({ type: 'subscribe', session_id: id, after: 0 });
      await eventually(
        async () => (await metric(d, 'keen_stream_slow_consumer_closes_total')) >= 1,
        15_000,
        'a slow-consumer close',
      );
      const sent = (await metric(d, 'keen_stream_messages_sent_total', { kind: 'event' })) - sentBefore;
      // Stopped well before the whole history was queued.
      expect(sent).to.be.below(3000);
      expect(process.memoryUsage().heapUsed - heapBefore).to.be.below(200 * 1024 * 1024);
      c.ws.resume();
      expect((await c.closedWithin(15_000)).code).to.equal(1013);
      expect(c.events().length).to.be.below(3000);
      await eventually(
        async () => (await metric(d, 'keen_stream_connections')) === 0,
        10_000,
        'the connection to be gone',
      );
      await expectAlive(d);
    } finally {
      d.container.stream.tune({ slowCloseGraceMs: 5_000 });
    }
  });

  it('drops a peer that stops answering pings', async () => {
    d.container.stream.tune({ pingIntervalMs: 200 });
    try {
      const u = await buildUser(d);
      const c = await connect(d, { token: u.token });
      // A paused client neither reads pings nor answers them.
      c.ws.pause();
      await eventually(
        async () => (await metric(d, 'keen_stream_connections')) === 0,
        10_000,
        'the dead peer to be dropped',
      );
      const alive = await connect(d, { token: u.token });
      await new Promise((res) => setTimeout(res, 800));
      // A client that answers stays.
      expect(alive.ws.readyState).to.equal(alive.ws.OPEN);
    } finally {
      d.container.stream.tune({ pingIntervalMs: 30_000 });
    }
  });
});

describe('stream: limits from the config', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon({ config: { stream: { max_connections_per_user: 1, max_subscriptions_per_connection: 1 } } });
  });
  afterEach(() => closeClients());
  after(async () => d?.stop());

  it('stream.max_connections_per_user: 1 refuses the second connection of a user (429 before the upgrade)', async () => {
    const u = await buildUser(d);
    const first = await connect(d, { token: u.token });
    const r = await refused(d, { token: u.token });
    expect(r.status).to.equal(429);
    expect(r.headers['retry-after']).to.be.a('string');
    expect(r.body.error).to.include({ code: 'CONCURRENCY_LIMIT', message: 'at most 1 stream connections per user' });
    // Another user is not affected; a closed connection frees its slot.
    await connect(d, { token: (await buildUser(d)).token });
    first.close();
    await first.closed;
    await eventually(async () => (await metric(d, 'keen_stream_connections')) <= 1, 5_000, 'the slot to be freed');
    await connect(d, { token: u.token });
  });

  it('stream.max_subscriptions_per_connection: 1 refuses a second subscription, and a second id in ?sessions=', async () => {
    const u = await buildUser(d);
    const ids = await Promise.all([1, 2].map(() => seedSession(d, u, 2, { status: 'running' })));
    const c = await connect(d, { token: u.token });
    for (const id of ids) c.send({ type: 'subscribe', session_id: id, after: 0 });
    await c.until((m) => m.some((x) => x.type === 'error'), 5_000, 'an error');
    expect(c.errors().map((e) => [e.error.code, e.session_id])).to.deep.equal([['RATE_LIMITED', ids[1]]]);
    c.close();
    await c.closed;
    const r = await refused(d, { token: u.token, query: `sessions=${ids.join(',')}` });
    expect(r.status).to.equal(400);
    expect(r.body.error.code).to.equal('INVALID_FIELD');
  });
});
