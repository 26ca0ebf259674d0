import http from 'node:http';
import net from 'node:net';
import { KeenClient, type KeenClientOptions } from '../../../sdk/src/index.js';
import type { TestDaemon } from '../../helpers/daemon.js';

/** A client of `d` (or of `baseUrl`) with fast retries, as the tests want it. */
export function sdk(
  d: { url: string } | string,
  auth: { apiKey: string } | { accessToken: string; refreshToken?: string },
  extra: Partial<KeenClientOptions> = {},
): KeenClient {
  return new KeenClient({ baseUrl: typeof d === 'string' ? d : d.url, ...auth, ...extra } as KeenClientOptions);
}

/** A loopback port nothing listens on. */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A local HTTP server with a scripted handler; `hits` counts requests. */
export async function scriptedServer(
  handler: (req: http.IncomingMessage, res: http.ServerResponse, hit: number) => void,
) {
  let hits = 0;
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => handler(req, res, ++hits));
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    get hits() {
      return hits;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A TCP proxy in front of a daemon: `cut()` drops every open connection (a
 * server-side disconnect as the client sees it) while new ones still go through.
 */
export class CuttableProxy {
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  url = '';
  connections = 0;

  constructor(private readonly target: TestDaemon) {}

  async up(): Promise<this> {
    const { hostname, port } = new URL(this.target.url);
    this.server = net.createServer((client) => {
      this.connections += 1;
      const upstream = net.connect(Number(port), hostname);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
    return this;
  }

  cut(): void {
    for (const s of this.sockets) s.destroy();
  }

  async down(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** An error envelope as the daemon writes it. */
export function envelope(type: string, code: string, message = code.toLowerCase()): string {
  return JSON.stringify({ success: false, error: { type, code, message, details: null }, request_id: 'req_scripted' });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
