import { cpSync, existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { PROJECT_ROOT } from '../../daemon/paths.js';

export const SDK_DIR = path.join(PROJECT_ROOT, 'sdk');

/**
 * sdk/ as a fresh clone has it, under `tmp/repo/sdk`: no dist, no
 * node_modules, with the repository's node_modules beside it (as after the
 * root `npm ci`). Building or packing it never touches the working tree's sdk/dist.
 */
export function freshSdkCopy(tmp: string): string {
  const repo = path.join(tmp, 'repo');
  const sdk = path.join(repo, 'sdk');
  mkdirSync(repo, { recursive: true });
  cpSync(SDK_DIR, sdk, {
    recursive: true,
    filter: (src) => {
      const rel = path.relative(SDK_DIR, src);
      const top = rel.split(path.sep)[0];
      return top !== 'dist' && top !== 'node_modules' && !rel.endsWith('.tgz');
    },
  });
  symlinkSync(path.join(PROJECT_ROOT, 'node_modules'), path.join(repo, 'node_modules'), 'dir');
  if (existsSync(path.join(sdk, 'dist'))) throw new Error('the copy of sdk/ has a dist/');
  return sdk;
}

/** What the page server saw of one request to the gateway. */
export interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  upgrade: boolean;
}

/**
 * A web server for a page, on its own origin, that also passes `/v1/...` (HTTP
 * and WebSocket upgrades) to the gateway, as a reverse proxy in front of both
 * would: the page and the API share one origin (the gateway sends no CORS
 * headers). `seen` lists what went to the gateway.
 */
export async function pageServer(files: Record<string, { type: string; file: string }>) {
  let target: URL | null = null;
  const seen: Seen[] = [];
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    if (url.startsWith('/v1/')) {
      if (!target) return void res.writeHead(502).end();
      seen.push({ method: req.method ?? 'GET', url, headers: req.headers, upgrade: false });
      const upstream = http.request(
        { host: target.hostname, port: target.port, method: req.method, path: url, headers: req.headers },
        (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
      return;
    }
    const f = files[url.split(/[?#]/)[0]!];
    if (!f) return void res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    res.writeHead(200, { 'content-type': f.type, 'cache-control': 'no-store' }).end(readFileSync(f.file));
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    seen.push({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, upgrade: true });
    if (!target) return void socket.destroy();
    const upstream = net.connect(Number(target.port), target.hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    seen,
    /** Where `/v1/...` goes: the gateway, once it runs (its allowed origins name this server). */
    proxyTo(url: string) {
      target = new URL(url);
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
