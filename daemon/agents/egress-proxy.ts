/**
 * The egress proxy of sandboxed agents.
 *
 * A sandboxed agent runs in its own network namespace with no route out. The
 * only way out is a unix socket bound into the sandbox, served here: an HTTP
 * proxy (CONNECT for https, absolute-form requests for plain http) that
 * carries traffic only to the hosts the operator lists in
 * `agent.sandbox.allowed_hosts`. Inside the namespace, EGRESS_BRIDGE_SOURCE
 * turns the socket back into a TCP proxy on 127.0.0.1 for the agent's
 * HTTPS_PROXY / HTTP_PROXY.
 *
 * The agent is untrusted, so every request is judged on what it names and on
 * where that name resolves: a listed name that resolves to loopback, the
 * private network or the cloud metadata service is refused (the same policy as
 * webhooks, address-policy.ts). The address checked is the address connected
 * to: the name is resolved once and the connection is pinned to that IP, so a
 * DNS answer that changes between check and connect (rebinding) cannot swap
 * the target.
 */
import { lstatSync, chmodSync, unlinkSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../logger.js';
import { firstForbidden } from '../webhooks/address-policy.js';
import { systemResolver, type Resolver } from '../webhooks/sender.js';

export interface EgressProxyOptions {
  /** Unix socket path to listen on; an existing stale socket file there is removed first. Created with mode 0o666 (the enclosing directory controls access). */
  socketPath: string;
  /** Hostnames allowed (case-insensitive). An entry "*.example.com" matches any subdomain of example.com (not example.com itself). Nothing else is allowed. */
  allowedHosts: string[];
  /** Resolves a host to all its addresses; default systemResolver from ../webhooks/sender.js */
  resolver?: Resolver;
  /** Tests only: when true, loopback/private addresses are not refused after resolution. Default false. */
  allowPrivateTargets?: boolean;
  logger: Logger;
  /** DNS + TCP connect timeout, default 10 s. */
  connectTimeoutMs?: number;
}

/**
 * Request headers that describe one hop, not the request (RFC 9110 7.6.1), plus
 * the proxy's own: never forwarded, so an agent's proxy credentials or
 * connection options do not reach the target.
 */
const HOP_BY_HOP = new Set([
  'proxy-authorization',
  'proxy-connection',
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** One DNS label: letters, digits, hyphen, underscore (some real names have one). */
const LABEL_RE = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** Lowercase, without IPv6 brackets and without one trailing dot: the form hosts are compared in. */
function normalizeHost(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h;
}

/** A last label that makes resolvers (inet_aton) and URL parsers read the name as an IPv4 address: `0x7f.1`, `2130706433`. */
const NUMERIC_LABEL_RE = /^(?:0x[0-9a-f]*|\d+)$/;

/**
 * A syntactically valid DNS name (already normalized): wildcards must not match
 * `a b.example.com` or `.example.com`, and a name ending in a number is an
 * address in disguise, not a name.
 */
function isHostname(h: string): boolean {
  if (h.length === 0 || h.length > 253) return false;
  const labels = h.split('.');
  return labels.every((label) => LABEL_RE.test(label)) && !NUMERIC_LABEL_RE.test(labels[labels.length - 1]!);
}

/**
 * True when `host` is on the `allowed` list. Case and one trailing dot do not
 * matter; IPv6 literals may carry brackets. `*.example.com` matches any name
 * below example.com (at any depth) but not example.com itself, and never an
 * IP literal. Anything else must match an entry exactly. Fails closed: a
 * malformed host or entry (a name ending in a number, like `0x7f.1`, included)
 * matches nothing.
 */
export function isAllowedHost(host: string, allowed: string[]): boolean {
  const h = normalizeHost(host);
  if (h.length === 0) return false;
  const literal = net.isIP(h) !== 0;
  if (!literal && !isHostname(h)) return false;
  for (const raw of allowed) {
    const entry = normalizeHost(raw);
    if (entry.startsWith('*.')) {
      const apex = entry.slice(2);
      if (literal || !isHostname(apex)) continue;
      if (h.length > apex.length + 1 && h.endsWith(`.${apex}`)) return true;
    } else if (entry.length > 0 && entry === h) {
      return true;
    }
  }
  return false;
}

/** Why a request was not carried, or where it goes: the outcome of the policy checks. */
type Verdict =
  | { ok: true; address: string; family: number }
  | { ok: false; status: 400 | 403 | 502 | 504; decision: string; message: string; address?: string };

class ConnectTimeout extends Error {}

/** Bytes a CONNECT client may send before its tunnel is up; beyond this it is simply not read until then. */
const MAX_EARLY_BYTES = 64 * 1024;

/**
 * The proxy. One node:http server on a unix socket; CONNECT requests become
 * byte tunnels, absolute-form requests are forwarded. Nothing is cached: each
 * request is judged and resolved on its own.
 */
export class EgressProxy {
  /** Counters for tests and metrics: requests that passed the policy (a later 502/504 included), and requests refused by it or as malformed (403/400). */
  readonly stats = { allowed: 0, refused: 0 };

  private readonly resolver: Resolver;
  private readonly allowPrivateTargets: boolean;
  private readonly connectTimeoutMs: number;
  private readonly log: Logger;
  private server: http.Server | undefined;
  /** Every client and upstream socket, so close() can end open tunnels at once. */
  private readonly sockets = new Set<Duplex>();
  private closing = false;

  constructor(private readonly opts: EgressProxyOptions) {
    this.resolver = opts.resolver ?? systemResolver;
    this.allowPrivateTargets = opts.allowPrivateTargets ?? false;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
    this.log = opts.logger.child({ component: 'egress-proxy' });
  }

  /** Listens on the socket. A leftover socket file from a dead run is removed; a live socket or any other file there is an error, never deleted. */
  async listen(): Promise<void> {
    if (this.server) throw new Error('egress proxy already listening');
    this.closing = false;
    const { socketPath } = this.opts;
    await removeStaleSocket(socketPath);

    const server = http.createServer();
    server.on('connection', (socket: net.Socket) => this.track(socket));
    server.on('connect', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      void this.onConnect(req, socket, head);
    });
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      void this.onRequest(req, res);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // Errors after listening (EMFILE on accept, ...) are logged, never thrown: a thrown 'error' would end the daemon.
    server.on('error', (err) => this.log.warn({ err: err.message }, 'egress proxy server error'));
    this.server = server;
    // Anyone who can reach the directory may connect: the sandbox decides who sees it.
    chmodSync(socketPath, 0o666);
    this.log.info({ socket: socketPath, allowed_hosts: this.opts.allowedHosts.length }, 'egress proxy listening');
  }

  /** Stops listening and destroys every connection, open tunnels included; does not wait for peers. */
  async close(): Promise<void> {
    this.closing = true;
    const server = this.server;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  /** Remembers a socket until it closes, and gives it an 'error' listener: a peer reset must never become an uncaught error. */
  private track(socket: Duplex): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.on('error', (err: NodeJS.ErrnoException) =>
      this.log.debug({ err: err.code ?? err.message }, 'egress socket error'),
    );
    socket.once('close', () => this.sockets.delete(socket));
  }

  /** `CONNECT host:port`: a byte tunnel to the pinned address, or an error status and close. */
  private async onConnect(req: http.IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
    // The http server dropped its own listeners when it handed the socket over; ours (track) stays.
    const started = Date.now();
    const target = parseAuthority(req.url ?? '');
    if (!target) {
      return this.answerRaw(
        client,
        { ok: false, status: 400, decision: 'bad_request', message: 'CONNECT needs host:port with a port in 1..65535' },
        undefined,
        undefined,
      );
    }
    const { host, port } = target;
    // Until the tunnel is up, read the client: bytes it sends early are kept for the target,
    // and a client that leaves meanwhile (EOF) is noticed, so no upstream connection is opened for nobody.
    const early: Buffer[] = head.length > 0 ? [head] : [];
    let earlyBytes = head.length;
    const onEarlyData = (chunk: Buffer): void => {
      early.push(chunk);
      earlyBytes += chunk.length;
      if (earlyBytes >= MAX_EARLY_BYTES) client.pause();
    };
    const onEarlyEnd = (): void => {
      client.destroy();
    };
    client.on('data', onEarlyData);
    client.once('end', onEarlyEnd);
    const stopEarly = (): void => {
      client.off('data', onEarlyData);
      client.off('end', onEarlyEnd);
      client.pause();
    };

    const verdict = await this.judge(host, port, started);
    if (!verdict.ok) {
      stopEarly();
      return this.answerRaw(client, verdict, host, port);
    }
    if (client.destroyed || this.closing) return;

    const upstream = net.connect({ host: verdict.address, port, family: verdict.family, allowHalfOpen: true });
    this.track(upstream);
    const abandon = (): void => {
      upstream.destroy();
    };
    client.once('close', abandon);
    const timer = setTimeout(
      () => upstream.destroy(new ConnectTimeout()),
      Math.max(0, this.connectTimeoutMs - (Date.now() - started)),
    );
    const failed = (err: Error): void => {
      clearTimeout(timer);
      stopEarly();
      const timeout = err instanceof ConnectTimeout;
      this.answerRaw(
        client,
        timeout
          ? {
              ok: false,
              status: 504,
              decision: 'upstream_timeout',
              message: `no connection to ${host}:${port} within ${this.connectTimeoutMs} ms`,
            }
          : {
              ok: false,
              status: 502,
              decision: 'upstream_error',
              message: `cannot connect to ${host}:${port} (${errorCode(err)})`,
            },
        host,
        port,
      );
    };
    upstream.once('error', failed);
    upstream.once('connect', () => {
      clearTimeout(timer);
      upstream.off('error', failed);
      client.off('close', abandon);
      stopEarly();
      if (client.destroyed) {
        upstream.destroy();
        return;
      }
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      for (const chunk of early) upstream.write(chunk);
      splice(client, upstream);
    });
  }

  /** An absolute-form request (`GET http://host/path`): forwarded to the pinned address, response streamed back. */
  private async onRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const started = Date.now();
    req.on('error', () => {});
    res.on('error', () => {});
    const raw = req.url ?? '';
    let url: URL | undefined;
    // Only absolute form: an origin-form request (`GET /x`) names no host, so there is nothing to carry it to.
    if (/^http:\/\//i.test(raw)) {
      try {
        url = new URL(raw);
      } catch {
        url = undefined;
      }
    }
    const port = url ? (url.port === '' ? 80 : Number(url.port)) : 0;
    if (!url || url.hostname === '' || !isPort(port)) {
      return this.answerHttp(
        res,
        {
          ok: false,
          status: 400,
          decision: 'bad_request',
          message: 'this is a proxy: send absolute-form http:// requests (https goes through CONNECT)',
        },
        undefined,
        undefined,
      );
    }
    const host = normalizeHost(url.hostname);
    const verdict = await this.judge(host, port, started);
    if (!verdict.ok) return this.answerHttp(res, verdict, host, port);
    if (req.destroyed || this.closing) return;

    const headers = endToEnd(req.headers);
    // The target's name, not the pinned IP: virtual hosts and TLS-less APIs route on it (RFC 9112 3.2.2: the request-target wins).
    headers.host = url.host;

    const upstreamReq = http.request({
      host: verdict.address,
      family: verdict.family,
      port,
      method: req.method,
      path: `${url.pathname}${url.search}`,
      headers,
      setHost: false,
      agent: false,
    });
    const timer = setTimeout(
      () => upstreamReq.destroy(new ConnectTimeout()),
      Math.max(0, this.connectTimeoutMs - (Date.now() - started)),
    );
    upstreamReq.on('socket', (socket) => {
      this.track(socket);
      socket.once('connect', () => clearTimeout(timer));
    });
    upstreamReq.on('error', (err) => {
      clearTimeout(timer);
      // The client left first (see 'close' below): nobody to answer.
      if (res.destroyed) return;
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const timeout = err instanceof ConnectTimeout;
      this.answerHttp(
        res,
        timeout
          ? {
              ok: false,
              status: 504,
              decision: 'upstream_timeout',
              message: `no connection to ${host}:${port} within ${this.connectTimeoutMs} ms`,
            }
          : {
              ok: false,
              status: 502,
              decision: 'upstream_error',
              message: `cannot reach ${host}:${port} (${errorCode(err)})`,
            },
        host,
        port,
      );
    });
    upstreamReq.on('response', (upstreamRes) => {
      upstreamRes.on('error', () => res.destroy());
      res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, endToEnd(upstreamRes.headers));
      upstreamRes.pipe(res);
    });
    // The client going away mid-request ends the upstream request too.
    res.on('close', () => {
      if (!res.writableFinished) upstreamReq.destroy();
    });
    req.pipe(upstreamReq);
  }

  /**
   * The policy: the host must be listed, and every address it resolves to must
   * be public (checking all, not just the first, because the answer is what
   * decides, and a mixed answer is a rebinding attempt or a misconfiguration).
   * Returns the first address, which is the one connected to.
   */
  private async judge(host: string, port: number, started: number): Promise<Verdict> {
    if (!isAllowedHost(host, this.opts.allowedHosts)) {
      return {
        ok: false,
        status: 403,
        decision: 'refused_host',
        message: `${host} is not in agent.sandbox.allowed_hosts`,
      };
    }
    let addresses: Array<{ address: string; family: number }>;
    const family = net.isIP(host);
    if (family !== 0) {
      addresses = [{ address: host, family }];
    } else {
      let timer: NodeJS.Timeout | undefined;
      try {
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new ConnectTimeout()), this.connectTimeoutMs - (Date.now() - started));
        });
        addresses = await Promise.race([this.resolver(host), timeout]);
      } catch (err) {
        if (err instanceof ConnectTimeout) {
          return {
            ok: false,
            status: 504,
            decision: 'dns_timeout',
            message: `${host} did not resolve within ${this.connectTimeoutMs} ms`,
          };
        }
        return {
          ok: false,
          status: 502,
          decision: 'dns_error',
          message: `${host} does not resolve (${errorCode(err)})`,
        };
      } finally {
        clearTimeout(timer);
      }
      if (addresses.length === 0) {
        return { ok: false, status: 502, decision: 'dns_error', message: `${host} has no address` };
      }
    }
    if (!this.allowPrivateTargets) {
      const bad = firstForbidden(addresses);
      if (bad) {
        // The address is logged, not told to the agent: it says nothing useful to it, and maps the private network.
        return {
          ok: false,
          status: 403,
          decision: 'refused_address',
          message: `${host} resolves to an address that is not public`,
          address: bad.address,
        };
      }
    }
    const first = addresses[0]!;
    this.stats.allowed++;
    this.log.info({ host, port, decision: 'allowed', address: first.address }, 'egress allowed');
    return { ok: true, address: first.address, family: first.family === 6 ? 6 : 4 };
  }

  private record(verdict: Extract<Verdict, { ok: false }>, host: string | undefined, port: number | undefined): void {
    const refused = verdict.status === 400 || verdict.status === 403;
    if (refused) this.stats.refused++;
    this.log.info(
      { host, port, decision: verdict.decision, status: verdict.status, address: verdict.address },
      refused ? 'egress refused' : 'egress failed',
    );
  }

  /** An error status on a CONNECT socket (a raw HTTP/1.1 response), then close. */
  private answerRaw(
    client: Duplex,
    verdict: Extract<Verdict, { ok: false }>,
    host: string | undefined,
    port: number | undefined,
  ): void {
    this.record(verdict, host, port);
    if (client.destroyed) return;
    const body = `egress refused: ${verdict.message}\n`;
    client.end(
      `HTTP/1.1 ${verdict.status} ${http.STATUS_CODES[verdict.status]}\r\n` +
        `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      // Half-open sockets would otherwise linger until the client closes its side.
      () => client.destroy(),
    );
  }

  /** An error status on a plain HTTP request; the connection is closed after it. */
  private answerHttp(
    res: http.ServerResponse,
    verdict: Extract<Verdict, { ok: false }>,
    host: string | undefined,
    port: number | undefined,
  ): void {
    this.record(verdict, host, port);
    if (res.destroyed || res.headersSent) return;
    const body = `egress refused: ${verdict.message}\n`;
    res.writeHead(verdict.status, {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      connection: 'close',
    });
    res.end(body);
  }
}

/**
 * Removes a socket file nobody listens on any more (a crashed run leaves one).
 * A socket someone still answers on belongs to a live process (a second daemon
 * with the same path): taking it over would cut that one's agents off, so it
 * is an error, as is a path that is not a socket at all.
 */
async function removeStaleSocket(socketPath: string): Promise<void> {
  try {
    if (!lstatSync(socketPath).isSocket()) throw new Error(`${socketPath} exists and is not a socket`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new Error(`${socketPath} is in use by a running process`);
  unlinkSync(socketPath);
}

/** The headers worth forwarding: all but the hop-by-hop ones, those named in Connection included (RFC 9110 7.6.1). */
function endToEnd(incoming: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const named = new Set(
    String(incoming.connection ?? '')
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter(Boolean),
  );
  const out: http.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(incoming)) {
    if (value !== undefined && !HOP_BY_HOP.has(name) && !named.has(name)) out[name] = value;
  }
  return out;
}

function isPort(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}

/** `host:port` or `[v6]:port` of a CONNECT request; null when malformed. The host comes back normalized. */
function parseAuthority(authority: string): { host: string; port: number } | null {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]\s/@]+):(\d{1,5})$/.exec(authority);
  if (!m) return null;
  const port = Number(m[2]);
  if (!isPort(port)) return null;
  const host = normalizeHost(m[1]!);
  return host.length > 0 ? { host, port } : null;
}

/**
 * Pipes two sockets both ways. Half-closes pass through (each side's end ends
 * the other's writing); an error or a full close of either destroys both.
 */
function splice(a: Duplex, b: Duplex): void {
  const destroyBoth = (): void => {
    a.destroy();
    b.destroy();
  };
  a.on('error', destroyBoth);
  b.on('error', destroyBoth);
  a.once('close', destroyBoth);
  b.once('close', destroyBoth);
  a.pipe(b);
  b.pipe(a);
}

function errorCode(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return typeof e?.code === 'string' ? e.code : 'error';
}

/**
 * The bridge the sandbox runs in front of the agent, inside the agent's network
 * namespace: `node bridge.mjs <unixSocketPath> <tcpPort> <agentProgram> [args...]`.
 * It listens on 127.0.0.1:<tcpPort> (and ::1 when the namespace has it) and
 * copies each connection byte for byte to the proxy's unix socket, so the agent
 * can use an ordinary HTTPS_PROXY. Only once listening does it start the agent
 * (stdio inherited, the bridge's environment), forwards SIGTERM/SIGINT/SIGHUP
 * to it, and leaves as the agent left: same exit code, or the same signal
 * re-raised on itself, so the runner sees the agent's own outcome. An agent
 * that cannot be started exits 127, as a shell would.
 *
 * Dependency-free (node: builtins only) because it is copied into the sandbox
 * alone. Plain string concatenation inside: it lives in a template literal.
 */
export const EGRESS_BRIDGE_SOURCE = `// keen egress bridge (generated from keen-gateway daemon/agents/egress-proxy.ts; do not edit)
import net from 'node:net';
import { spawn } from 'node:child_process';
import { constants } from 'node:os';

const [socketPath, portText, program, ...args] = process.argv.slice(2);
const port = Number(portText);
if (!socketPath || !program || !Number.isInteger(port) || port < 1 || port > 65535) {
  process.stderr.write('usage: node bridge.mjs <unixSocketPath> <tcpPort> <agentProgram> [agentArgs...]\\n');
  process.exit(2);
}

const sockets = new Set();
const servers = [];

// One TCP connection of the agent, copied to one connection to the proxy's socket.
function bridge(client) {
  const upstream = net.connect({ path: socketPath, allowHalfOpen: true });
  const destroyBoth = () => {
    client.destroy();
    upstream.destroy();
  };
  for (const s of [client, upstream]) {
    sockets.add(s);
    s.on('error', destroyBoth);
    s.once('close', () => {
      sockets.delete(s);
      destroyBoth();
    });
  }
  client.pipe(upstream);
  upstream.pipe(client);
}

function listen(host) {
  return new Promise((resolve, reject) => {
    const server = net.createServer({ allowHalfOpen: true }, bridge);
    server.once('error', reject);
    server.listen({ host, port, ipv6Only: host === '::1' }, () => {
      server.off('error', reject);
      server.on('error', () => {});
      servers.push(server);
      resolve();
    });
  });
}

try {
  await listen('127.0.0.1');
} catch (err) {
  process.stderr.write('egress bridge: cannot listen on 127.0.0.1:' + port + ': ' + (err && err.code ? err.code : String(err)) + '\\n');
  process.exit(1);
}
// IPv6 loopback may be absent from the namespace; IPv4 is enough.
await listen('::1').catch(() => {});

let child;
try {
  child = spawn(program, args, { stdio: 'inherit', env: process.env });
} catch (err) {
  cannotStart(err);
}
let started = false;
child.once('spawn', () => {
  started = true;
});
// 'on', not 'once': a later error (a failed kill) must not go unhandled.
child.on('error', (err) => {
  if (!started) cannotStart(err);
});

const FORWARDED = ['SIGTERM', 'SIGINT', 'SIGHUP'];
for (const sig of FORWARDED) {
  process.on(sig, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(sig);
  });
}

child.once('exit', (code, signal) => {
  // A failed spawn is reported by 'error' (cannotStart), whatever the order of the two events.
  if (!started) return;
  for (const server of servers) server.close();
  for (const s of sockets) s.destroy();
  if (signal) {
    // Die of the same signal: the default action must run, so no handler of ours may catch it.
    for (const sig of FORWARDED) process.removeAllListeners(sig);
    process.removeAllListeners(signal);
    try {
      process.kill(process.pid, signal);
    } catch {}
    // Signals whose default is to be ignored (or that were ignored when we started) come here: the shell convention.
    setTimeout(() => process.exit(128 + (constants.signals[signal] || 0)), 200);
    return;
  }
  process.exit(code === null ? 1 : code);
});

function cannotStart(err) {
  process.stderr.write('egress bridge: cannot start agent ' + JSON.stringify(program) + ': ' + (err && err.code ? err.code : String(err)) + '\\n');
  process.exit(127);
}
`;
