import type http from 'node:http';
import type { AuthService } from '../auth/auth-service.js';
import type { AuditLogger } from '../audit/types.js';
import type { Clock } from '../clock.js';
import type { ResolvedConfig } from '../config/load.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { EventBus } from '../sessions/bus.js';
import type { Database } from '../storage/database.js';

export interface StreamServerDeps {
  auth: AuthService;
  database: Database;
  bus: EventBus;
  config: ResolvedConfig;
  logger: Logger;
  metrics: Metrics;
  clock: Clock;
  audit: AuditLogger;
}

/** The WebSocket stream on the HTTP server's port (`GET /v1/stream`). Not built yet: upgrades are refused. */
export class StreamServer {
  constructor(private readonly deps: StreamServerDeps) {}

  /** Takes over `upgrade` events of the HTTP server. */
  attach(server: http.Server): void {
    server.on('upgrade', (_req, socket) => {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    });
    void this.deps;
  }

  /** Closes every stream connection with 1001 (going away) so clients resume elsewhere. */
  async close(): Promise<void> {}
}
