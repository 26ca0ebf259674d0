import type { ResolvedConfig } from './config/load.js';
import { systemClock, type Clock } from './clock.js';
import { resolveJwtSecret } from './auth/jwt-secret.js';
import { buildOpenApi } from './http/openapi.js';
import { createApp } from './http/app.js';
import type { RouteSpec } from './http/routes.js';
import { systemRoutes, type HealthCheck } from './http/routes/system.js';
import { Validator } from './http/validation.js';
import type { Logger } from './logger.js';
import { Metrics } from './metrics.js';
import { createAjv, loadSchemas } from './schemas.js';
import { Database } from './storage/database.js';
import { migrateToLatest } from './storage/migrator.js';
import { VERSION } from './version.js';
import type Koa from 'koa';
import type { AppState } from './http/context.js';

export interface ContainerOptions {
  config: ResolvedConfig;
  logger: Logger;
  clock?: Clock;
  /** Collect process metrics (off in tests that build many daemons in one process). */
  defaultMetrics?: boolean;
}

/**
 * The composition root: builds every object once, in dependency order, and
 * knows how to stop them in reverse. Nothing else constructs services.
 */
export class Container {
  readonly config: ResolvedConfig;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly metrics: Metrics;
  readonly database: Database;
  readonly validator: Validator;
  readonly jwtSecret: Buffer;
  readonly routes: RouteSpec[];
  readonly app: Koa<AppState>;
  private openapiDoc: Record<string, unknown> | null = null;
  private readonly stoppers: Array<() => Promise<void>> = [];

  constructor(options: ContainerOptions) {
    this.config = options.config;
    this.logger = options.logger;
    this.clock = options.clock ?? systemClock;
    this.metrics = new Metrics({ defaultMetrics: options.defaultMetrics ?? true });
    this.jwtSecret = resolveJwtSecret({
      provided: this.config.jwt_secret,
      env: this.config.env,
      dataDir: this.config.data_dir,
      logger: this.logger,
    });
    this.database = new Database({
      url: this.config.database.url,
      poolMax: this.config.database.pool_max,
      connectTimeoutMs: this.config.database.connect_timeout_ms,
      busyTimeoutMs: this.config.database.busy_timeout_ms,
      logger: this.logger,
    });
    this.stoppers.push(() => this.database.close());
    const schemas = loadSchemas();
    this.validator = new Validator(createAjv());

    const checks: HealthCheck[] = [{ name: 'database', check: () => this.database.ping() }];
    this.routes = [
      ...systemRoutes({
        checks,
        metrics: this.metrics,
        version: VERSION,
        openapi: () => (this.openapiDoc ??= buildOpenApi(this.routes, schemas, VERSION)),
      }),
    ];
    this.app = createApp({
      logger: this.logger,
      metrics: this.metrics,
      validator: this.validator,
      routes: this.routes,
      bodyLimitBytes: this.config.server.body_limit_bytes,
      trustedProxies: this.config.server.trusted_proxies,
    });
  }

  /** Prepares storage (migrations) and starts background work. */
  async start(): Promise<void> {
    const report = await migrateToLatest(this.database);
    if (report.applied.length > 0) this.logger.info({ applied: report.applied }, 'migrations applied');
  }

  /** Stops background work and closes connections, newest first. */
  async stop(): Promise<void> {
    for (const stop of this.stoppers.reverse()) {
      try {
        await stop();
      } catch (err) {
        this.logger.warn({ err: { message: (err as Error).message } }, 'error while stopping');
      }
    }
    this.stoppers.length = 0;
  }
}
