import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Container } from './container.js';

export interface RunningServer {
  server: http.Server;
  port: number;
  url: string;
  /** Stops accepting, lets in-flight requests finish within the deadline, then closes everything. */
  close(): Promise<void>;
}

/**
 * The http server's defences against slow clients (slowloris): a request whose
 * headers, or whole request, arrive too slowly is answered 408 and closed; idle
 * keep-alive connections are closed. Node enforces the first two only when it
 * sweeps its connections, every `connectionsCheckingInterval` (30 s by
 * default, which let a header timeout of 20 s hold for up to 50 s); the sweep
 * runs here every second, or a fifth of the header timeout when that is
 * shorter, so a timeout is enforced within at most one interval of its value.
 * Upgraded connections (WebSocket streams) leave the sweep at the upgrade,
 * so requestTimeout never cuts a stream; the stream's own heartbeat watches them.
 */
export function serverTimeouts(server: {
  headers_timeout_ms: number;
  request_timeout_ms: number;
  keep_alive_timeout_ms: number;
}): http.ServerOptions {
  return {
    headersTimeout: server.headers_timeout_ms,
    requestTimeout: server.request_timeout_ms,
    keepAliveTimeout: server.keep_alive_timeout_ms,
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(server.headers_timeout_ms / 5))),
  };
}

/** Starts the container's app on the configured address. */
export async function listen(
  container: Container,
  overrides: { port?: number; host?: string } = {},
): Promise<RunningServer> {
  const { config, logger } = container;
  const server = http.createServer(serverTimeouts(config.server), container.app.callback());
  server.maxHeadersCount = 200;
  if (config.server.max_connections > 0) {
    server.maxConnections = config.server.max_connections;
    // Node closes a connection over the cap as soon as it is accepted; say so, at most once a minute.
    let lastWarned = 0;
    server.on('drop', () => {
      const now = Date.now();
      if (now - lastWarned < 60_000) return;
      lastWarned = now;
      logger.warn(
        { max_connections: config.server.max_connections },
        'server.max_connections reached: new connections are closed',
      );
    });
  }
  container.stream.attach(server);
  const host = overrides.host ?? config.server.host;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(overrides.port ?? config.server.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  // With port 0 the real port is known only now: links follow it unless a public URL is configured.
  container.publicUrl.listening(url);
  logger.info({ host, port, database: container.database.dialect }, 'listening');

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      const deadlineMs = config.server.shutdown_timeout_seconds * 1000;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Stream clients get 1001 (going away) and resume on another daemon.
      await container.stream.close();
      server.closeIdleConnections();
      // Keep-alive sockets that finish a request while we wait are closed as they go idle.
      const idleSweep = setInterval(() => server.closeIdleConnections(), 100);
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        closed.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), deadlineMs);
        }),
      ]);
      clearInterval(idleSweep);
      clearTimeout(timer);
      if (timedOut) {
        logger.warn({ deadline_ms: deadlineMs }, 'shutdown deadline passed; closing remaining connections');
        server.closeAllConnections();
        await closed;
      }
      await container.stop();
      logger.info('stopped');
    })());
  return { server, port, url, close };
}
