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

/** Starts the container's app on the configured address. */
export async function listen(container: Container, overrides: { port?: number; host?: string } = {}): Promise<RunningServer> {
  const { config, logger } = container;
  const server = http.createServer({ requestTimeout: 60_000, headersTimeout: 20_000, keepAliveTimeout: 5_000 }, container.app.callback());
  server.maxHeadersCount = 200;
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
  // With port 0 the real port is known only now.
  if (config.server.public_url_auto) config.server.public_url = url;
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
