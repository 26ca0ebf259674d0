import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import type { LookupAddress } from 'node:dns';
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLogger, type Logger } from '../../../daemon/logger.js';
import {
  EGRESS_BRIDGE_SOURCE,
  EgressProxy,
  isAllowedHost,
  type EgressProxyOptions,
} from '../../../daemon/agents/egress-proxy.js';
import { freePort } from '../../helpers/ports.js';

/** A resolver that answers from a table and records every name it was asked. */
function fakeResolver(table: Record<string, string[]>): {
  calls: string[];
  resolve: (host: string) => Promise<LookupAddress[]>;
} {
  const calls: string[] = [];
  return {
    calls,
    resolve: async (host) => {
      calls.push(host);
      const found = table[host];
      if (!found) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
      return found.map((address) => ({ address, family: net.isIP(address) }));
    },
  };
}

/** A logger whose JSON lines are kept, to check what is (and is not) logged. */
function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: createLogger('info', { write: (line: string) => void lines.push(line) }), lines };
}

interface Response {
  status: number;
  text: string;
}

/** Sends raw bytes to the proxy socket and reads until the proxy closes the connection. */
function exchange(socketPath: string, request: string): Promise<Response> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (text += d));
    socket.on('error', reject);
    socket.on('close', () => resolve({ status: Number(/^HTTP\/1\.1 (\d{3}) /.exec(text)?.[1] ?? 0), text }));
    socket.write(request);
  });
}

/** Opens a CONNECT tunnel; resolves once the proxy's answer head has arrived, with any bytes after it. */
function openTunnel(
  socketPath: string,
  authority: string,
  head = '',
): Promise<{ socket: net.Socket; status: number; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.pause();
      resolve({
        socket,
        status: Number(/^HTTP\/1\.1 (\d{3}) /.exec(buf.toString('latin1'))?.[1] ?? 0),
        rest: buf.subarray(end + 4),
      });
    };
    socket.on('data', onData);
    socket.on('error', reject);
    socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n${head}`);
  });
}

/** Reads from a socket until `n` bytes have arrived (counting `already`). */
function readBytes(socket: net.Socket, n: number, already: Buffer = Buffer.alloc(0)): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf = already;
    const check = (): void => {
      if (buf.length >= n) {
        socket.off('data', onData);
        resolve(buf);
      }
    };
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      check();
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('close', () => reject(new Error(`closed after ${buf.length} of ${n} bytes`)));
    socket.resume();
    check();
  });
}

function waitClose(socket: net.Socket): Promise<void> {
  return new Promise((resolve) =>
    socket.destroyed && socket.closed ? resolve() : socket.once('close', () => resolve()),
  );
}

describe('agents/egress-proxy', () => {
  let dir: string;
  let socketPath: string;
  let cleanups: Array<() => unknown>;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'keen-egress-'));
    socketPath = path.join(dir, 'egress.sock');
    cleanups = [];
  });
  afterEach(async () => {
    for (const fn of cleanups.reverse()) await fn();
    rmSync(dir, { recursive: true, force: true });
  });

  async function startProxy(overrides: Partial<EgressProxyOptions> = {}): Promise<EgressProxy> {
    const proxy = new EgressProxy({
      socketPath,
      allowedHosts: ['api.test'],
      logger: createLogger('silent'),
      ...overrides,
    });
    await proxy.listen();
    cleanups.push(() => proxy.close());
    return proxy;
  }

  /** A TCP echo server on 127.0.0.1 that counts its connections. */
  async function echoServer(): Promise<{ port: number; connections: () => number; sockets: Set<net.Socket> }> {
    let count = 0;
    const sockets = new Set<net.Socket>();
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      count++;
      sockets.add(s);
      s.on('error', () => {});
      s.pipe(s);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          for (const s of sockets) s.destroy();
          server.close(() => resolve());
        }),
    );
    return { port: (server.address() as net.AddressInfo).port, connections: () => count, sockets };
  }

  /** An HTTP server on 127.0.0.1 that records the requests it sees and counts its connections. */
  async function httpServer(
    handler: http.RequestListener,
  ): Promise<{ port: number; seen: http.IncomingMessage[]; connections: () => number }> {
    const seen: http.IncomingMessage[] = [];
    let count = 0;
    const server = http.createServer((req, res) => {
      seen.push(req);
      handler(req, res);
    });
    server.on('connection', () => count++);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    );
    return { port: (server.address() as net.AddressInfo).port, seen, connections: () => count };
  }

  describe('isAllowedHost', () => {
    it('matches exact names regardless of case and of one trailing dot', () => {
      expect(isAllowedHost('api.example.com', ['api.example.com'])).to.equal(true);
      expect(isAllowedHost('API.Example.COM', ['api.example.com'])).to.equal(true);
      expect(isAllowedHost('api.example.com', ['API.EXAMPLE.COM'])).to.equal(true);
      expect(isAllowedHost('api.example.com.', ['api.example.com'])).to.equal(true);
      expect(isAllowedHost('api.example.com', ['api.example.com.'])).to.equal(true);
      expect(isAllowedHost('api.example.com..', ['api.example.com'])).to.equal(false);
      expect(isAllowedHost('other.example.com', ['api.example.com'])).to.equal(false);
      expect(isAllowedHost('example.com', ['api.example.com'])).to.equal(false);
      expect(isAllowedHost('x.api.example.com', ['api.example.com'])).to.equal(false);
      expect(isAllowedHost('api.example.com', [])).to.equal(false);
    });

    it('a wildcard matches subdomains at any depth, never the apex nor a look-alike suffix', () => {
      const list = ['*.example.com'];
      expect(isAllowedHost('a.example.com', list)).to.equal(true);
      expect(isAllowedHost('a.b.EXAMPLE.com.', list)).to.equal(true);
      expect(isAllowedHost('example.com', list)).to.equal(false);
      expect(isAllowedHost('example.com.', list)).to.equal(false);
      expect(isAllowedHost('evilexample.com', list)).to.equal(false);
      expect(isAllowedHost('a.evilexample.com', list)).to.equal(false);
      expect(isAllowedHost('example.com.evil.net', list)).to.equal(false);
      expect(isAllowedHost('a.example.com.evil.net', list)).to.equal(false);
      expect(isAllowedHost('.example.com', list)).to.equal(false);
      expect(isAllowedHost('a..example.com', list)).to.equal(false);
      expect(isAllowedHost('a b.example.com', list)).to.equal(false);
      expect(isAllowedHost('a/b.example.com', list)).to.equal(false);
      expect(isAllowedHost('*.example.com', list)).to.equal(false);
    });

    it('only "*." entries are wildcards; IP literals match exactly, brackets and case aside', () => {
      expect(isAllowedHost('anything.com', ['*'])).to.equal(false);
      expect(isAllowedHost('a.example.com', ['*example.com'])).to.equal(false);
      expect(isAllowedHost('203.0.113.5', ['203.0.113.5'])).to.equal(true);
      expect(isAllowedHost('1.203.0.113.5', ['*.203.0.113.5'])).to.equal(false);
      expect(isAllowedHost('127.0.0.1', ['*.0.0.1'])).to.equal(false);
      // Names ending in a number are addresses to inet_aton and to URL parsers (0x7f.1 is 127.0.0.1): never names.
      expect(isAllowedHost('0x7f.1', ['0x7f.1'])).to.equal(false);
      expect(isAllowedHost('a.0x7f', ['*.0x7f'])).to.equal(false);
      expect(isAllowedHost('2130706433', ['2130706433'])).to.equal(false);
      expect(isAllowedHost('a.example.123', ['*.example.123'])).to.equal(false);
      expect(isAllowedHost('a.123.example', ['*.123.example'])).to.equal(true);
      expect(isAllowedHost('[2001:DB8::1]', ['2001:db8::1'])).to.equal(true);
      expect(isAllowedHost('', ['*.example.com', 'api.test'])).to.equal(false);
    });
  });

  describe('CONNECT', () => {
    it('refuses a host that is not listed with 403, before resolving or connecting', async () => {
      const echo = await echoServer();
      const dns = fakeResolver({ 'evil.test': ['127.0.0.1'] });
      const { logger, lines } = capturingLogger();
      const proxy = await startProxy({ resolver: dns.resolve, allowPrivateTargets: true, logger });
      for (const authority of [
        `evil.test:${echo.port}`,
        `127.0.0.1:${echo.port}`,
        `[::1]:${echo.port}`,
        `api.test.evil.test:${echo.port}`,
      ]) {
        const res = await exchange(
          socketPath,
          `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: Basic c2VjcmV0LXRva2Vu\r\n\r\n`,
        );
        expect(res.status, authority).to.equal(403);
        expect(res.text).to.include('not in agent.sandbox.allowed_hosts');
      }
      expect(dns.calls).to.deep.equal([]);
      expect(echo.connections()).to.equal(0);
      expect(proxy.stats).to.deep.equal({ allowed: 0, refused: 4 });
      // Each refusal is logged with host, port and decision, and no header value.
      const refusals = lines
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.decision === 'refused_host');
      expect(refusals.map((l) => [l.host, l.port, l.level])).to.deep.equal([
        ['evil.test', echo.port, 'info'],
        ['127.0.0.1', echo.port, 'info'],
        ['::1', echo.port, 'info'],
        ['api.test.evil.test', echo.port, 'info'],
      ]);
      expect(lines.join('')).not.to.include('c2VjcmV0LXRva2Vu');
    });

    for (const address of ['127.0.0.1', '10.0.0.1', '169.254.169.254', '::1']) {
      it(`refuses a listed host that resolves to ${address} (403, not public)`, async () => {
        const echo = await echoServer();
        const dns = fakeResolver({ 'api.test': [address] });
        const proxy = await startProxy({ resolver: dns.resolve });
        const res = await exchange(socketPath, `CONNECT api.test:${echo.port} HTTP/1.1\r\nHost: api.test\r\n\r\n`);
        expect(res.status).to.equal(403);
        expect(res.text).to.include('not public');
        expect(res.text).not.to.include(address);
        expect(dns.calls).to.deep.equal(['api.test']);
        expect(echo.connections()).to.equal(0);
        expect(proxy.stats).to.deep.equal({ allowed: 0, refused: 1 });
      });
    }

    it('refuses a listed private IP literal unless private targets are allowed', async () => {
      const echo = await echoServer();
      await startProxy({ allowedHosts: ['127.0.0.1'] });
      const res = await exchange(socketPath, `CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\n\r\n`);
      expect(res.status).to.equal(403);
      expect(res.text).to.include('not public');
      expect(echo.connections()).to.equal(0);
    });

    it('refuses a host whose answer mixes a public and a private address, whichever comes first', async () => {
      const echo = await echoServer();
      const dns = fakeResolver({
        'api.test': ['93.184.216.34', '127.0.0.1'],
        'b.api.test': ['127.0.0.1', '2606:4700:4700::1111'],
      });
      const proxy = await startProxy({ resolver: dns.resolve, allowedHosts: ['api.test', '*.api.test'] });
      for (const host of ['api.test', 'b.api.test']) {
        const res = await exchange(socketPath, `CONNECT ${host}:${echo.port} HTTP/1.1\r\n\r\n`);
        expect(res.status, host).to.equal(403);
        expect(res.text).to.include('not public');
      }
      expect(echo.connections()).to.equal(0);
      expect(proxy.stats).to.deep.equal({ allowed: 0, refused: 2 });
    });

    it('tunnels bytes both ways to the pinned address, head bytes first, resolving once', async function () {
      this.timeout(5000);
      const echo = await echoServer();
      const dns = fakeResolver({ 'api.test': ['127.0.0.1'] });
      const proxy = await startProxy({ resolver: dns.resolve, allowPrivateTargets: true });
      const tunnel = await openTunnel(socketPath, `API.test.:${echo.port}`, 'early;');
      expect(tunnel.status).to.equal(200);
      tunnel.socket.write('later');
      expect((await readBytes(tunnel.socket, 'early;later'.length, tunnel.rest)).toString()).to.equal('early;later');
      // Binary-safe: bytes that are not text, CR LF included.
      tunnel.socket.write(Buffer.from([0, 255, 13, 10]));
      expect([...(await readBytes(tunnel.socket, 4))]).to.deep.equal([0, 255, 13, 10]);
      expect(dns.calls).to.deep.equal(['api.test']);
      expect(echo.connections()).to.equal(1);
      expect(proxy.stats).to.deep.equal({ allowed: 1, refused: 0 });
      // The client's half-close reaches the target, whose own close comes back.
      tunnel.socket.end();
      await waitClose(tunnel.socket);
    });

    it('answers 400 to a malformed target or a port outside 1..65535, without resolving', async () => {
      const dns = fakeResolver({ 'api.test': ['127.0.0.1'] });
      const proxy = await startProxy({ resolver: dns.resolve, allowPrivateTargets: true });
      const bad = [
        'api.test:0',
        'api.test:65536',
        'api.test:99999',
        'api.test:-1',
        'api.test:http',
        'api.test',
        '::1:443',
        'api.test:443/x',
        ':443',
      ];
      for (const authority of bad) {
        const res = await exchange(socketPath, `CONNECT ${authority} HTTP/1.1\r\n\r\n`);
        expect(res.status, authority).to.equal(400);
      }
      expect(dns.calls).to.deep.equal([]);
      expect(proxy.stats).to.deep.equal({ allowed: 0, refused: bad.length });
    });

    it('answers 502 when the target refuses the connection and 504 when resolution hangs', async function () {
      this.timeout(5000);
      const closed = await freePort();
      const hang = (): Promise<LookupAddress[]> => new Promise(() => {});
      const dns = fakeResolver({ 'api.test': ['127.0.0.1'] });
      await startProxy({
        resolver: (h) => (h === 'slow.test' ? hang() : dns.resolve(h)),
        allowedHosts: ['api.test', 'slow.test'],
        allowPrivateTargets: true,
        connectTimeoutMs: 200,
      });
      const refused = await exchange(socketPath, `CONNECT api.test:${closed} HTTP/1.1\r\n\r\n`);
      expect(refused.status).to.equal(502);
      expect(refused.text).to.include('ECONNREFUSED');
      const started = Date.now();
      const slow = await exchange(socketPath, `CONNECT slow.test:443 HTTP/1.1\r\n\r\n`);
      expect(slow.status).to.equal(504);
      expect(Date.now() - started).to.be.lessThan(2000);
    });

    it('survives peer resets on either side and keeps serving', async () => {
      const echo = await echoServer();
      let release: () => void = () => {};
      const gate = new Promise<void>((resolve) => (release = resolve));
      const dns = fakeResolver({ 'api.test': ['127.0.0.1'] });
      await startProxy({
        resolver: async (h) => {
          if (h === 'gate.test') await gate;
          return dns.resolve(h === 'gate.test' ? 'api.test' : h);
        },
        allowedHosts: ['api.test', 'gate.test'],
        allowPrivateTargets: true,
      });
      // The client goes away while its request is being resolved (a unix socket has no RST: it just closes).
      const early = net.connect(socketPath);
      early.on('error', () => {});
      early.write(`CONNECT gate.test:${echo.port} HTTP/1.1\r\n\r\n`);
      await new Promise((r) => setTimeout(r, 50));
      early.destroy();
      await new Promise((r) => setTimeout(r, 20));
      release();
      await new Promise((r) => setTimeout(r, 20));
      // The target resets an open tunnel.
      const tunnel = await openTunnel(socketPath, `api.test:${echo.port}`);
      expect(tunnel.status).to.equal(200);
      tunnel.socket.on('error', () => {});
      tunnel.socket.write('x');
      await readBytes(tunnel.socket, 1, tunnel.rest);
      for (const s of echo.sockets) s.resetAndDestroy();
      await waitClose(tunnel.socket);
      // The client drops an open tunnel in the middle of a write.
      const second = await openTunnel(socketPath, `api.test:${echo.port}`);
      second.socket.on('error', () => {});
      second.socket.write(Buffer.alloc(256 * 1024));
      second.socket.destroy();
      await new Promise((r) => setTimeout(r, 50));
      // Still serving; the client that left during resolution never reached the target.
      const third = await openTunnel(socketPath, `api.test:${echo.port}`);
      third.socket.write('ok');
      expect((await readBytes(third.socket, 2, third.rest)).toString()).to.equal('ok');
      third.socket.destroy();
      expect(echo.connections()).to.equal(3);
    });
  });

  describe('plain HTTP', () => {
    function proxyRequest(
      options: http.RequestOptions,
      body?: string,
    ): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
      return new Promise((resolve, reject) => {
        const req = http.request({ socketPath, agent: false, ...options }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
        });
        req.on('error', reject);
        req.end(body);
      });
    }

    it('forwards an absolute-form request to the pinned address, without proxy and hop-by-hop headers, and streams the answer', async function () {
      this.timeout(5000);
      let release: () => void = () => {};
      const released = new Promise<void>((resolve) => (release = resolve));
      const upstream = await httpServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': 'yes' });
        // The second half is sent only after the client has seen the first: a proxy that buffered would hang here.
        res.write('first;');
        void released.then(() => res.end('second'));
      });
      const dns = fakeResolver({ 'api.test': ['127.0.0.1'] });
      const proxy = await startProxy({ resolver: dns.resolve, allowPrivateTargets: true });
      const authority = `api.test:${upstream.port}`;
      const answer = await new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>(
        (resolve, reject) => {
          const req = http.request(
            {
              socketPath,
              agent: false,
              path: `http://${authority}/hello?x=1`,
              headers: {
                host: authority,
                'proxy-authorization': 'Basic c2VjcmV0',
                'proxy-connection': 'keep-alive',
                connection: 'keep-alive, X-Private-Hop',
                'keep-alive': 'timeout=5',
                te: 'trailers',
                'x-private-hop': 'drop me',
                'x-keep': 'keep me',
              },
            },
            (res) => {
              let text = '';
              res.setEncoding('utf8');
              res.on('data', (d: string) => {
                text += d;
                release();
              });
              res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
            },
          );
          req.on('error', reject);
          req.end();
        },
      );
      expect(answer.status).to.equal(200);
      expect(answer.body).to.equal('first;second');
      expect(answer.headers['x-upstream']).to.equal('yes');
      expect(upstream.seen).to.have.length(1);
      const seen = upstream.seen[0]!;
      expect(seen.url).to.equal('/hello?x=1');
      expect(seen.method).to.equal('GET');
      expect(seen.headers.host).to.equal(authority);
      expect(seen.headers['x-keep']).to.equal('keep me');
      for (const name of ['proxy-authorization', 'proxy-connection', 'keep-alive', 'te', 'x-private-hop']) {
        expect(seen.headers, name).not.to.have.property(name);
      }
      expect(seen.headers.connection ?? 'close').to.equal('close');
      expect(dns.calls).to.deep.equal(['api.test']);
      expect(proxy.stats).to.deep.equal({ allowed: 1, refused: 0 });
    });

    it('forwards a request body, chunked or not', async () => {
      const upstream = await httpServer((req, res) => {
        let body = '';
        req.setEncoding('utf8');
        req.on('data', (d: string) => (body += d));
        req.on('end', () => res.end(`${req.method} ${body}`));
      });
      await startProxy({ resolver: fakeResolver({ 'api.test': ['127.0.0.1'] }).resolve, allowPrivateTargets: true });
      const url = `http://api.test:${upstream.port}/submit`;
      const plain = await proxyRequest({ method: 'POST', path: url, headers: { 'content-length': '5' } }, 'hello');
      expect(plain.body).to.equal('POST hello');
      const chunked = await proxyRequest(
        { method: 'PUT', path: url, headers: { 'transfer-encoding': 'chunked' } },
        'streamed',
      );
      expect(chunked.body).to.equal('PUT streamed');
    });

    it('answers 400 to origin-form, https absolute-form and a bad port, without resolving', async () => {
      const dns = fakeResolver({ 'api.test': ['127.0.0.1'] });
      const proxy = await startProxy({ resolver: dns.resolve, allowPrivateTargets: true });
      expect((await proxyRequest({ path: '/x', headers: { host: 'api.test' } })).status).to.equal(400);
      expect((await proxyRequest({ path: 'https://api.test/x' })).status).to.equal(400);
      expect((await proxyRequest({ path: 'http://api.test:0/x' })).status).to.equal(400);
      expect((await proxyRequest({ path: 'http://api.test:65536/x' })).status).to.equal(400);
      expect(dns.calls).to.deep.equal([]);
      expect(proxy.stats).to.deep.equal({ allowed: 0, refused: 4 });
    });

    it('does not reach the target for a client that left while its host was being resolved', async () => {
      const upstream = await httpServer((_req, res) => res.end('nobody is listening'));
      let release: () => void = () => {};
      const gate = new Promise<void>((resolve) => (release = resolve));
      let resolved = 0;
      await startProxy({
        resolver: async () => {
          await gate;
          resolved++;
          return [{ address: '127.0.0.1', family: 4 }];
        },
        allowPrivateTargets: true,
      });
      const client = net.connect(socketPath);
      client.on('error', () => {});
      client.write(`GET http://api.test:${upstream.port}/ HTTP/1.1\r\nHost: api.test:${upstream.port}\r\n\r\n`);
      await new Promise((r) => setTimeout(r, 50));
      client.destroy();
      await new Promise((r) => setTimeout(r, 20));
      release();
      await new Promise((r) => setTimeout(r, 100));
      expect(resolved).to.equal(1);
      expect(upstream.connections()).to.equal(0);
    });

    it('refuses an unlisted host and a listed host on a private address with 403, the target untouched', async () => {
      const upstream = await httpServer((_req, res) => res.end('should not be reached'));
      const dns = fakeResolver({ 'api.test': ['127.0.0.1'], 'evil.test': ['127.0.0.1'] });
      await startProxy({ resolver: dns.resolve });
      const unlisted = await proxyRequest({ path: `http://evil.test:${upstream.port}/` });
      expect(unlisted.status).to.equal(403);
      expect(unlisted.body).to.include('not in agent.sandbox.allowed_hosts');
      const literal = await proxyRequest({ path: `http://127.0.0.1:${upstream.port}/` });
      expect(literal.status).to.equal(403);
      const privateAddress = await proxyRequest({ path: `http://api.test:${upstream.port}/` });
      expect(privateAddress.status).to.equal(403);
      expect(privateAddress.body).to.include('not public');
      expect(upstream.connections()).to.equal(0);
      expect(dns.calls).to.deep.equal(['api.test']);
    });
  });

  describe('listen and close', () => {
    it('replaces a stale socket file and makes the socket 0666', async () => {
      // A socket file left by a process that died without closing.
      const child = spawn(process.execPath, [
        '-e',
        `require('node:net').createServer().listen(${JSON.stringify(socketPath)}, () => process.kill(process.pid, 'SIGKILL'))`,
      ]);
      await new Promise((resolve) => child.once('exit', resolve));
      expect(lstatSync(socketPath).isSocket()).to.equal(true);
      await startProxy();
      expect(statSync(socketPath).mode & 0o777).to.equal(0o666);
      expect((await exchange(socketPath, 'CONNECT evil.test:443 HTTP/1.1\r\n\r\n')).status).to.equal(403);
    });

    it('refuses to delete a file that is not a socket, or a socket another process still serves', async () => {
      writeFileSync(socketPath, 'precious');
      const proxy = new EgressProxy({ socketPath, allowedHosts: [], logger: createLogger('silent') });
      let err: unknown;
      await proxy.listen().catch((e: unknown) => (err = e));
      expect(err).to.be.instanceOf(Error);
      expect(readFileSync(socketPath, 'utf8')).to.equal('precious');
      rmSync(socketPath);

      const first = await startProxy();
      const second = new EgressProxy({ socketPath, allowedHosts: ['evil.test'], logger: createLogger('silent') });
      err = undefined;
      await second.listen().catch((e: unknown) => (err = e));
      expect((err as Error | undefined)?.message).to.include('in use');
      // The first proxy still owns the path and answers on it.
      expect((await exchange(socketPath, 'CONNECT evil.test:443 HTTP/1.1\r\n\r\n')).status).to.equal(403);
      expect(first.stats.refused).to.equal(1);
    });

    it('close() ends open tunnels and returns within a second', async function () {
      this.timeout(5000);
      const echo = await echoServer();
      const proxy = await startProxy({
        resolver: fakeResolver({ 'api.test': ['127.0.0.1'] }).resolve,
        allowPrivateTargets: true,
      });
      const tunnel = await openTunnel(socketPath, `api.test:${echo.port}`);
      expect(tunnel.status).to.equal(200);
      tunnel.socket.on('error', () => {});
      tunnel.socket.resume();
      // An idle keep-alive connection too.
      const idle = net.connect(socketPath);
      idle.on('error', () => {});
      await new Promise((resolve) => idle.once('connect', resolve));
      const started = Date.now();
      const closed = await Promise.race([
        proxy.close().then(() => true),
        new Promise<false>((r) => setTimeout(() => r(false), 1000)),
      ]);
      expect(closed, 'close() resolved within 1 s').to.equal(true);
      expect(Date.now() - started).to.be.lessThan(1000);
      await Promise.all([waitClose(tunnel.socket), waitClose(idle)]);
      expect(existsSync(socketPath)).to.equal(false);
    });
  });

  describe('bridge', () => {
    let bridgePath: string;
    let children: ChildProcess[];
    let strayPids: number[];

    beforeEach(() => {
      bridgePath = path.join(dir, 'bridge.mjs');
      writeFileSync(bridgePath, EGRESS_BRIDGE_SOURCE);
      children = [];
      strayPids = [];
      cleanups.push(() => {
        for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
        for (const pid of strayPids) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // Already gone.
          }
        }
      });
    });

    interface BridgeRun {
      child: ChildProcess;
      stdout: () => string;
      stderr: () => string;
      exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
    }

    function runBridge(args: string[]): BridgeRun {
      const child = spawn(process.execPath, [bridgePath, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
      children.push(child);
      let out = '';
      let err = '';
      child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
      const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.once('exit', (code, signal) => resolve({ code, signal })),
      );
      return { child, stdout: () => out, stderr: () => err, exit };
    }

    it('carries the agent through the proxy to an allowed host, passes stdin through and exits with its code', async () => {
      const echo = await echoServer();
      const proxy = await startProxy({
        resolver: fakeResolver({ 'api.test': ['127.0.0.1'] }).resolve,
        allowPrivateTargets: true,
      });
      const port = await freePort();
      // The agent: read stdin, CONNECT through the bridge, send stdin through the tunnel, print the echo, exit 7.
      const agent = `
        const net = require('node:net');
        let input = '';
        process.stdin.setEncoding('utf8');
        process.stdin.on('data', (d) => (input += d));
        // First a connection the agent resets halfway through a request: the bridge must not die of it.
        const r = net.connect(${port}, '127.0.0.1', () => {
          r.write('CONNECT api.te');
          setTimeout(() => r.resetAndDestroy(), 20);
        });
        r.on('error', () => {});
        process.stdin.on('end', () => setTimeout(main, 100));
        function main() {
          const s = net.connect(${port}, '127.0.0.1');
          let buf = '';
          let open = false;
          s.setEncoding('utf8');
          s.on('error', (e) => { process.stderr.write(String(e)); process.exit(4); });
          s.write('CONNECT api.test:${echo.port} HTTP/1.1\\r\\nHost: api.test:${echo.port}\\r\\n\\r\\n');
          s.on('data', (d) => {
            buf += d;
            if (!open) {
              const end = buf.indexOf('\\r\\n\\r\\n');
              if (end < 0) return;
              if (!buf.startsWith('HTTP/1.1 200')) { process.stderr.write(buf); process.exit(3); }
              open = true;
              buf = buf.slice(end + 4);
              s.write('echo:' + input);
            }
            if (buf.length >= ('echo:' + input).length) process.stdout.write(buf, () => process.exit(7));
          });
        }`;
      const run = runBridge([socketPath, String(port), process.execPath, '-e', agent]);
      run.child.stdin!.end('hello agent\n');
      const { code, signal } = await run.exit;
      expect(run.stderr()).to.equal('');
      expect({ code, signal }).to.deep.equal({ code: 7, signal: null });
      expect(run.stdout()).to.equal('echo:hello agent\n');
      expect(echo.connections()).to.equal(1);
      expect(proxy.stats).to.deep.equal({ allowed: 1, refused: 0 });
    });

    it('an agent refused by the proxy sees the 403 through the bridge', async () => {
      await startProxy();
      const port = await freePort();
      const agent = `
        const s = require('node:net').connect(${port}, '127.0.0.1');
        let buf = '';
        s.on('data', (d) => (buf += d));
        s.on('close', () => process.stdout.write(buf.split('\\r\\n')[0], () => process.exit(0)));
        s.write('CONNECT evil.test:443 HTTP/1.1\\r\\n\\r\\n');`;
      const run = runBridge([socketPath, String(port), process.execPath, '-e', agent]);
      expect(await run.exit).to.deep.equal({ code: 0, signal: null });
      expect(run.stdout()).to.equal('HTTP/1.1 403 Forbidden');
    });

    it('dies of the signal the agent died of', async () => {
      await startProxy();
      const run = runBridge([
        socketPath,
        String(await freePort()),
        process.execPath,
        '-e',
        `process.kill(process.pid, 'SIGTERM'); setTimeout(() => {}, 5000);`,
      ]);
      expect(await run.exit).to.deep.equal({ code: null, signal: 'SIGTERM' });
    });

    it('forwards SIGTERM to the agent and exits as the agent does', async function () {
      this.timeout(5000);
      await startProxy();
      const agent = `
        process.on('SIGTERM', () => process.stdout.write('got SIGTERM\\n', () => process.exit(3)));
        process.stdout.write('ready ' + process.pid + '\\n');
        setInterval(() => {}, 1000);`;
      const run = runBridge([socketPath, String(await freePort()), process.execPath, '-e', agent]);
      await new Promise<void>((resolve) => {
        const check = (): void => {
          const m = /ready (\d+)\n/.exec(run.stdout());
          if (!m) return;
          strayPids.push(Number(m[1]));
          run.child.stdout!.off('data', check);
          resolve();
        };
        run.child.stdout!.on('data', check);
      });
      run.child.kill('SIGTERM');
      expect(await run.exit).to.deep.equal({ code: 3, signal: null });
      expect(run.stdout()).to.include('got SIGTERM\n');
    });

    it('exits 127 with one line on stderr when the agent cannot be started', async () => {
      await startProxy();
      const run = runBridge([socketPath, String(await freePort()), path.join(dir, 'no-such-agent'), '--flag']);
      expect(await run.exit).to.deep.equal({ code: 127, signal: null });
      const lines = run.stderr().split('\n').filter(Boolean);
      expect(lines).to.have.length(1);
      expect(lines[0]).to.include('no-such-agent');
    });
  });
});
