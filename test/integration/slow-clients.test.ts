import { expect } from 'chai';
import net from 'node:net';
import WebSocket from 'ws';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { buildUser } from '../helpers/factories.js';
import { closeClients, connect } from './stream/support.js';

/**
 * Slowloris and friends: clients that hold a connection by sending a request a
 * byte at a time. The server's header and request timeouts must cut them within
 * the timeout plus the connection check interval (never above 1 s), while other
 * clients are served and upgraded WebSocket streams are left alone.
 */
const HEADERS_MS = 1000;
const REQUEST_MS = 2000;
/** The server checks expired connections at most every second (less with short timeouts). */
const CHECK_MS = 1000;
/** Scheduling slack on a loaded test machine. */
const MARGIN_MS = 1500;
const SLOW_SOCKETS = 50;

interface SlowSocket {
  socket: net.Socket;
  opened: number;
  /** When the server closed it (ms since opened), null while open. */
  closedAfter: Promise<number>;
  received: () => string;
  stop(): void;
}

/** A raw connection that writes `prefix` one byte every `everyMs`, then `tail` forever, never finishing the request. */
function dribble(port: number, prefix: string, everyMs: number, tail = 'a'): SlowSocket {
  const socket = net.connect(port, '127.0.0.1');
  const opened = Date.now();
  let got = '';
  let i = 0;
  socket.on('data', (chunk: Buffer) => (got += String(chunk)));
  socket.on('error', () => undefined);
  const timer = setInterval(() => {
    if (socket.destroyed || !socket.writable) return;
    socket.write(i < prefix.length ? prefix[i++]! : tail);
  }, everyMs);
  const closedAfter = new Promise<number>((resolve) =>
    socket.once('close', () => {
      clearInterval(timer);
      resolve(Date.now() - opened);
    }),
  );
  return {
    socket,
    opened,
    closedAfter,
    received: () => got,
    stop() {
      clearInterval(timer);
      socket.destroy();
    },
  };
}

/** Resolves with `promise`'s value, or null when it takes longer than `ms`. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

describe('slow clients: header and request timeouts', function () {
  this.timeout(30_000);
  let d: TestDaemon;
  const open: SlowSocket[] = [];

  before(async () => {
    d = await startDaemon({
      config: {
        server: { headers_timeout_ms: HEADERS_MS, request_timeout_ms: REQUEST_MS, keep_alive_timeout_ms: 1000 },
      },
    });
  });
  afterEach(() => {
    for (const s of open.splice(0)) s.stop();
    closeClients();
  });
  after(async () => d?.stop());

  it(`closes ${SLOW_SOCKETS} connections dribbling their headers byte by byte, while a normal request is served`, async () => {
    const port = d.server.port;
    const headers = `GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ${'a'.repeat(4000)}`;
    for (let i = 0; i < SLOW_SOCKETS; i++) open.push(dribble(port, headers, 50));
    // A connection that says nothing at all is cut the same way.
    const silent = dribble(port, '', 60_000, '');
    open.push(silent);

    // Meanwhile another client is served normally.
    await new Promise((resolve) => setTimeout(resolve, HEADERS_MS / 2));
    const r = await d.api.get('/health/live');
    expect(r.status).to.equal(200);

    const bound = HEADERS_MS + CHECK_MS + MARGIN_MS;
    const closed = await Promise.all(open.map((s) => within(s.closedAfter, bound + 1000)));
    const stillOpen = closed.filter((t) => t === null).length;
    expect(stillOpen, `connections still open after ${bound + 1000} ms`).to.equal(0);
    for (const t of closed)
      expect(t!)
        .to.be.at.most(bound)
        .and.at.least(HEADERS_MS - 50);
    // The server said why before closing.
    for (const s of open) expect(s.received()).to.match(/^HTTP\/1\.1 408 /);
    // Still serving afterwards.
    expect((await d.api.get('/health/live')).status).to.equal(200);
  });

  it('cuts a request whose body is dribbled slower than request_timeout, without running the route', async () => {
    const port = d.server.port;
    const body = JSON.stringify({ email: 'slow@example.test', password: 'x'.repeat(40) });
    const head = `POST /v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    // The headers arrive at once; then one byte of body every 100 ms: the body would take ~6 s.
    const s = dribble(port, '', 100, '');
    open.push(s);
    s.socket.write(head);
    let i = 0;
    const timer = setInterval(() => {
      if (s.socket.destroyed || i >= body.length) return clearInterval(timer);
      s.socket.write(body[i++]!);
    }, 100);
    const t = await within(s.closedAfter, REQUEST_MS + CHECK_MS + MARGIN_MS + 1000);
    clearInterval(timer);
    expect(t, 'the slow body was not cut').to.not.equal(null);
    expect(t!)
      .to.be.at.least(REQUEST_MS - 50)
      .and.at.most(REQUEST_MS + CHECK_MS + MARGIN_MS);
    expect(i, 'cut before the body was complete').to.be.below(body.length);
    expect(s.received()).to.match(/^HTTP\/1\.1 408 /);
  });

  it('leaves an established WebSocket stream open past request_timeout, and it still carries messages', async () => {
    const u = await buildUser(d, { tier: 'team' });
    const c = await connect(d, { token: u.token });
    await new Promise((resolve) => setTimeout(resolve, REQUEST_MS * 2 + CHECK_MS));
    expect(c.ws.readyState).to.equal(WebSocket.OPEN);
    // A request on the stream still gets an answer (a subscribe to an unknown session is refused in-band).
    const before = c.messages.length;
    c.send({ type: 'subscribe', session_id: 'ses_00000000000000000000000000', after: 0 });
    await c.until((m) => m.length > before, 5000, 'an answer on the stream');
    expect(c.ws.readyState).to.equal(WebSocket.OPEN);
  });

  it('closes idle keep-alive connections after keep_alive_timeout', async () => {
    const s = dribble(d.server.port, '', 60_000, '');
    open.push(s);
    s.socket.write('GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    const t = await within(s.closedAfter, 1000 + CHECK_MS + MARGIN_MS + 1000);
    expect(t, 'idle keep-alive connection never closed').to.not.equal(null);
    expect(s.received()).to.match(/^HTTP\/1\.1 200 /);
  });
});

describe('server.max_connections', function () {
  this.timeout(30_000);
  let d: TestDaemon;
  const open: SlowSocket[] = [];
  before(async () => {
    d = await startDaemon({ config: { server: { max_connections: 5 } } });
  });
  after(async () => {
    for (const s of open.splice(0)) s.stop();
    await d?.stop();
  });

  it('closes connections over the cap at once, and serves again when some are gone', async () => {
    const port = d.server.port;
    const held = Array.from({ length: 5 }, () => dribble(port, 'GET /health/live HTTP/1.1\r\n', 200, ''));
    open.push(...held);
    await Promise.all(
      held.map(
        (s) =>
          new Promise((resolve) =>
            s.socket.readyState === 'open' ? resolve(null) : s.socket.once('connect', resolve),
          ),
      ),
    );
    // Let the server account for them.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const extra = dribble(port, '', 60_000, '');
    open.push(extra);
    const t = await within(extra.closedAfter, 2000);
    expect(t, 'a connection over the cap was kept').to.not.equal(null);
    expect(extra.received()).to.equal('');
    expect(d.logs.join('')).to.include('server.max_connections reached');

    for (const s of held) s.stop();
    await Promise.all(held.map((s) => s.closedAfter));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await d.api.get('/health/live')).status).to.equal(200);
  });
});
