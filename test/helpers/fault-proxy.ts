import net from 'node:net';

export type LinkState = 'up' | 'blackhole' | 'refusing';

/**
 * A TCP proxy between a daemon and a real Postgres or Redis, to make the
 * network faults a fleet meets without stopping the server other suites use:
 *
 * - `cut()`: closes every open link (FIN) and refuses new ones, as a peer
 *   that went away;
 * - `reset()`: aborts every open link with a TCP RST and refuses new ones, as
 *   a crashed peer or a middlebox dropping state;
 * - `blackhole()`: keeps links open but forwards nothing in either direction,
 *   and accepts new connections that never answer: a partition, where only
 *   timeouts tell;
 * - `resume()`: accepts and forwards again (links blackholed meanwhile carry
 *   on; links cut or reset stay closed).
 *
 * `url(base)` rewrites a connection URL to go through the proxy.
 */
export class FaultProxy {
  private server: net.Server | null = null;
  private readonly links = new Set<{ client: net.Socket; upstream: net.Socket }>();
  private state: LinkState = 'up';
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  /** A proxy in front of the host and port of `url` (postgres://, redis://). */
  static for(url: string): FaultProxy {
    const u = new URL(url);
    const defaultPort = u.protocol.startsWith('redis') ? 6379 : 5432;
    return new FaultProxy({ host: u.hostname || '127.0.0.1', port: Number(u.port || defaultPort) });
  }

  get linkState(): LinkState {
    return this.state;
  }

  /** Open links right now (each is one client connection). */
  get openLinks(): number {
    return this.links.size;
  }

  async start(port = 0): Promise<void> {
    const server = net.createServer({ pauseOnConnect: true }, (client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as net.AddressInfo).port;
  }

  /** `base` with its host and port replaced by the proxy's. */
  url(base: string): string {
    const u = new URL(base);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  cut(): void {
    this.state = 'refusing';
    for (const link of this.links) {
      link.client.destroy();
      link.upstream.destroy();
    }
    this.links.clear();
  }

  reset(): void {
    this.state = 'refusing';
    for (const link of this.links) {
      link.client.resetAndDestroy();
      link.upstream.destroy();
    }
    this.links.clear();
  }

  blackhole(): void {
    this.state = 'blackhole';
    for (const link of this.links) {
      link.client.unpipe(link.upstream);
      link.upstream.unpipe(link.client);
      link.client.pause();
      link.upstream.pause();
    }
  }

  resume(): void {
    const was = this.state;
    this.state = 'up';
    if (was === 'blackhole') for (const link of this.links) this.forward(link);
  }

  async close(): Promise<void> {
    this.cut();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    client.on('error', () => undefined);
    if (this.state === 'refusing') {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(this.target.port, this.target.host);
    upstream.on('error', () => undefined);
    upstream.pause();
    const link = { client, upstream };
    this.links.add(link);
    const drop = (): void => {
      if (!this.links.delete(link)) return;
      client.destroy();
      upstream.destroy();
    };
    client.on('close', drop);
    upstream.on('close', drop);
    if (this.state === 'up') this.forward(link);
  }

  private forward(link: { client: net.Socket; upstream: net.Socket }): void {
    link.client.pipe(link.upstream);
    link.upstream.pipe(link.client);
    link.client.resume();
    link.upstream.resume();
  }
}
