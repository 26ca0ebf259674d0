import type { ResolvedConfig } from './config/load.js';
import { systemClock, type Clock } from './clock.js';
import { resolveJwtSecret, resolvePreviousSecrets } from './auth/jwt-secret.js';
import { buildOpenApi } from './http/openapi.js';
import { createApp } from './http/app.js';
import type { RouteSpec } from './http/routes.js';
import { systemRoutes, type HealthCheck } from './http/routes/system.js';
import { Validator } from './http/validation.js';
import type { Logger } from './logger.js';
import { Metrics } from './metrics.js';
import { createAjv, loadSchemas } from './schemas.js';
import { databaseFromConfig, type Database, type Queryable } from './storage/database.js';
import { AuditRepository } from './storage/repos/audit.js';
import { IdempotencyRepository } from './storage/repos/idempotency.js';
import { WebhookOutbox } from './storage/repos/webhook-deliveries.js';
import { WebhookEndpointRepository } from './storage/repos/webhook-endpoints.js';
import { ApiKeyExpiryRepository } from './storage/repos/api-key-expiry.js';
import { OperationsReads } from './storage/repos/operations.js';
import { formatCredits } from './credits/money.js';
import { migrateToLatest } from './storage/migrator.js';
import { VERSION } from './version.js';
import type Koa from 'koa';
import type { AppState } from './http/context.js';
import { AccessTokens } from './auth/access-tokens.js';
import { AuthService } from './auth/auth-service.js';
import { LoginThrottle } from './auth/login-throttle.js';
import { PasswordHasher } from './auth/passwords.js';
import { SecretBox } from './auth/secret-box.js';
import type { AuditLogger } from './audit/types.js';
import { routeGuards } from './http/middleware/authenticate.js';
import { adminUserRoutes } from './http/routes/admin-users.js';
import { apiKeyRoutes } from './http/routes/api-keys.js';
import { authRoutes } from './http/routes/auth.js';
import { createRateLimiter } from './limits/factory.js';
import { RateLimitMetrics } from './limits/metrics.js';
import type { RateLimiter } from './limits/types.js';
import { createRedis } from './redis.js';
import type { Redis } from 'ioredis';
import { rateLimit } from './http/middleware/rate-limit.js';
import { DatabaseAuditLogger } from './audit/store.js';
import { AuditCheckpointer } from './audit/checkpoints.js';
import { AuditRetention } from './audit/retention.js';
import { AuditQuery } from './audit/query.js';
import { AuditVerification } from './audit/verification.js';
import { presentBudgetStatus } from './credits/budget-present.js';
import { BudgetBook, BudgetCalendar, type ThresholdCrossing } from './credits/budgets.js';
import { CreditLedger } from './credits/ledger.js';
import { CostEstimator } from './credits/estimator.js';
import { CreditReaper } from './credits/reaper.js';
import { IdempotencyStore } from './idempotency/store.js';
import { creditRoutes } from './http/routes/credits.js';
import { creditPoolRoutes } from './http/routes/credit-pools.js';
import { budgetRoutes } from './http/routes/budgets.js';
import { BudgetAdmin } from './credits/budget-admin.js';
import { usageRoutes } from './http/routes/usage.js';
import { UsageReports } from './credits/usage.js';
import { creditRepositories } from './storage/repos/credits.js';
import { accountRepositories, type AccountRepositories } from './storage/repos/accounts.js';
import { prepareAuthReads } from './storage/repos/auth-reads.js';
import { SessionRepository } from './storage/repos/sessions.js';
import { UsageRepository } from './storage/repos/usage.js';
import { sessionRoutes } from './http/routes/sessions.js';
import { checkAgentCommand } from './agents/command-check.js';
import { ConfigError } from './config/errors.js';
import { ProcessRunner } from './agents/process-runner.js';
import { EgressProxy } from './agents/egress-proxy.js';
import { Sandbox, SandboxUnavailableError } from './agents/sandbox.js';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { WorkspaceManager } from './agents/workspaces.js';
import type { AgentRunner } from './agents/types.js';
import { MemoryEventBus, type EventBus } from './sessions/bus.js';
import { RedisEventBus } from './sessions/redis-bus.js';
import { loadInstanceId } from './sessions/instance-id.js';
import { ensureDatabaseId } from './storage/database-id.js';
import { SessionMetrics } from './sessions/metrics.js';
import { SessionService } from './sessions/session-service.js';
import { SessionSupervisor } from './sessions/supervisor.js';
import { WorkspaceJanitor } from './sessions/workspace-janitor.js';
import { WebhookService, type WebhookEventType } from './webhooks/service.js';
import { validateWebhookUrl } from './webhooks/url.js';
import { presentSession } from './sessions/presenters.js';
import { PublicUrl } from './http/presenters/public-url.js';
import { sessionPresenters } from './http/presenters/sessions.js';
import { webhookRoutes } from './http/routes/webhooks.js';
import { WebhookEndpoints } from './webhooks/endpoints.js';
import { KeyExpiryNotices } from './webhooks/key-expiry.js';
import { Monitoring } from './monitoring/index.js';
import { StreamServer, streamOptionsFromConfig } from './ws/stream-server.js';
import { streamTicketRoutes } from './http/routes/stream-tickets.js';
import { adminAuditRoutes } from './http/routes/admin-audit.js';
import { UserAdminService } from './users/user-admin.js';
import { DiskSpaceCheck } from './storage/disk.js';
import { acquireDataDirLock, type DataDirLock } from './data-dir-lock.js';
import { hostname } from 'node:os';

export interface ContainerOptions {
  config: ResolvedConfig;
  logger: Logger;
  clock?: Clock;
  /** Collect process metrics (off in tests that build many daemons in one process). */
  defaultMetrics?: boolean;
  /** Where audit events go; tests pass a MemoryAuditLogger to inspect them. */
  audit?: AuditLogger;
  /** Replaces the process runner (tests of the execute path with a scripted agent). */
  runner?: AgentRunner;
}

/**
 * The composition root: builds every object once, in dependency order, and
 * knows how to stop them in reverse. Nothing else constructs services.
 */
export class Container {
  readonly config: ResolvedConfig;
  /** The resolved public URL: daemon/server.ts tells it the real address once listening. */
  readonly publicUrl: PublicUrl;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly metrics: Metrics;
  readonly database: Database;
  readonly validator: Validator;
  readonly jwtSecret: Buffer;
  /** Rotated-out secrets still accepted (JWT_PREVIOUS_SECRETS). */
  readonly previousJwtSecrets: Buffer[];
  readonly routes: RouteSpec[];
  readonly audit: AuditLogger;
  readonly limiter: RateLimiter;
  readonly redis: Redis | null;
  readonly hasher: PasswordHasher;
  readonly accessTokens: AccessTokens;
  readonly auth: AuthService;
  readonly users: UserAdminService;
  readonly ledger: CreditLedger;
  /** Budgets of API keys, users and tenants, checked at reservation (docs/credits.md, "Budgets"). */
  readonly budgets: BudgetBook;
  readonly budgetAdmin: BudgetAdmin;
  /** Usage reports over the ledger and sessions (GET /v1/usage, /v1/admin/usage). */
  readonly usage: UsageReports;
  readonly idempotency: IdempotencyStore;
  readonly estimator: CostEstimator;
  /** The durable audit store (also when tests inspect events through `audit`). */
  readonly auditStore: DatabaseAuditLogger;
  readonly instanceId: string;
  /** The database's identity (gateway_meta), read at start; served on /health/live. */
  databaseId: string | undefined;
  readonly bus: EventBus;
  readonly workspaces: WorkspaceManager;
  /** The operating-system sandbox of every agent (docs/SANDBOX.md); probed in `start()`. */
  readonly sandbox: Sandbox;
  readonly supervisor: SessionSupervisor;
  readonly sessions: SessionService;
  readonly stream: StreamServer;
  readonly webhooks: WebhookService;
  readonly webhookEndpoints: WebhookEndpoints;
  /** `api_key.expiring`, 7 days ahead. */
  readonly keyExpiry: KeyExpiryNotices;
  readonly monitoring: Monitoring;
  private readonly background: Array<{ start(): void; stop(): void | Promise<void> }> = [];
  readonly app: Koa<AppState>;
  private openapiDoc: Record<string, unknown> | null = null;
  private readonly stoppers: Array<() => Promise<void>> = [];
  /** Users and credentials, built once: shared by auth, user admin, budgets and the budget announcements. */
  private readonly accounts: AccountRepositories;
  /** The data directory's exclusive lock, held from `start()` until the very end of `stop()`. */
  private dataDirLock: DataDirLock | null = null;

  constructor(options: ContainerOptions) {
    this.config = options.config;
    this.publicUrl = new PublicUrl(this.config.server);
    this.logger = options.logger;
    this.clock = options.clock ?? systemClock;
    this.metrics = new Metrics({ defaultMetrics: options.defaultMetrics ?? true });
    this.jwtSecret = resolveJwtSecret({
      provided: this.config.jwt_secret,
      env: this.config.env,
      dataDir: this.config.data_dir,
      logger: this.logger,
    });
    this.previousJwtSecrets = resolvePreviousSecrets({
      provided: this.config.jwt_previous_secrets,
      current: this.jwtSecret,
      env: this.config.env,
      logger: this.logger,
    });
    this.database = databaseFromConfig(this.config, { logger: this.logger, keepReads: true });
    const audits = new AuditRepository(this.database);
    const webhookOutbox = new WebhookOutbox(this.database);
    const webhookEndpoints = new WebhookEndpointRepository(this.database);
    const accounts = (this.accounts = accountRepositories(this.database));
    const sessionRows = new SessionRepository(this.database.db);
    this.stoppers.push(() => this.database.close());
    const schemas = loadSchemas();
    this.validator = new Validator(createAjv());

    this.auditStore = new DatabaseAuditLogger({
      database: this.database,
      audits,
      clock: this.clock,
      logger: this.logger,
      metrics: this.metrics,
    });
    this.stoppers.push(() => this.auditStore.close());
    this.audit = options.audit ?? this.auditStore;
    this.redis = this.config.redis.url ? createRedis(this.config.redis.url, this.logger) : null;
    if (this.redis) {
      const redis = this.redis;
      this.stoppers.push(async () => {
        await redis.quit().catch(() => redis.disconnect());
      });
    }
    const rateLimitMetrics = new RateLimitMetrics(this.metrics);
    this.limiter = createRateLimiter({
      redis: this.redis,
      metrics: rateLimitMetrics,
      clock: this.clock,
      prefix: `${this.config.redis.key_prefix}rl:`,
    });
    this.stoppers.push(() => this.limiter.close());
    this.hasher = new PasswordHasher({ maxConcurrent: this.config.auth.max_concurrent_hashes });
    const accessTokens = (this.accessTokens = new AccessTokens(this.jwtSecret, {
      issuer: this.config.auth.issuer,
      audience: this.config.auth.audience,
      ttlSeconds: this.config.auth.access_token_ttl_seconds,
      clock: this.clock,
      previousSecrets: this.previousJwtSecrets,
    }));
    const throttle = this.config.auth.login_throttle;
    const loginThrottle = new LoginThrottle(this.limiter, {
      maxFailuresPerEmail: throttle.max_failures_per_email,
      maxFailuresPerIp: throttle.max_failures_per_ip,
      windowSeconds: throttle.window_seconds,
      maxBackoffSeconds: throttle.max_backoff_seconds,
    });
    this.auth = new AuthService({
      database: this.database,
      users: accounts.users,
      credentials: accounts.credentials,
      reads: prepareAuthReads(this.database),
      clock: this.clock,
      hasher: this.hasher,
      accessTokens,
      audit: this.audit,
      secretBox: new SecretBox(this.jwtSecret, 'totp-secrets', this.previousJwtSecrets),
      throttle: loginThrottle,
      refreshTtlMs: this.config.auth.refresh_token_ttl_days * 86_400_000,
      issuer: this.config.auth.issuer,
    });
    const budgetThresholds = this.metrics.counter(
      'keen_budget_thresholds_total',
      'Budget thresholds crossed (once per budget and period), by subject (api_key, user, tenant) and threshold percent.',
      ['subject', 'threshold'],
    );
    const creditRepos = creditRepositories(this.database);
    this.budgets = new BudgetBook({
      repository: creditRepos.budgets,
      calendar: new BudgetCalendar(this.config.credits.budget_time_zone),
      audit: this.audit,
      thresholds: this.config.credits.budget_thresholds,
      onThreshold: (c) => budgetThresholds.inc({ subject: c.budget.subject, threshold: String(c.threshold) }),
      // `this.webhooks` is built below; these run long after construction.
      onThresholdInTransaction: (t, c) => this.announceBudgetThreshold(t, c),
    });
    this.ledger = new CreditLedger({
      database: this.database,
      repositories: creditRepos,
      clock: this.clock,
      audit: this.audit,
      metrics: this.metrics,
      budgets: this.budgets,
      onCharged: async (t, c) => {
        // Each endpoint has its own threshold: sent to those whose threshold this charge crossed.
        await this.webhooks.emit(t, {
          type: 'credits.low_balance',
          userIds: [c.userId],
          tenantId: c.tenantId,
          sessionId: c.sessionId,
          data: null,
          accept: (ep) =>
            ep.low_balance_threshold !== null &&
            c.balanceBefore >= ep.low_balance_threshold &&
            c.balanceAfter < ep.low_balance_threshold,
          dataFor: (ep) => ({
            user_id: c.userId,
            threshold: formatCredits(ep.low_balance_threshold ?? 0),
            balance: formatCredits(c.balanceAfter),
            available: formatCredits(c.availableAfter),
            session_id: c.sessionId,
          }),
        });
      },
    });
    this.budgetAdmin = new BudgetAdmin({
      database: this.database,
      clock: this.clock,
      budgets: this.budgets,
      audit: this.audit,
      repositories: {
        budgets: creditRepos.budgets,
        credentials: accounts.credentials,
        users: accounts.users,
      },
    });
    this.users = new UserAdminService({
      database: this.database,
      users: accounts.users,
      credentials: accounts.credentials,
      clock: this.clock,
      hasher: this.hasher,
      audit: this.audit,
      throttle: loginThrottle,
      budgets: this.budgetAdmin,
    });
    const idempotencyKeys = new IdempotencyRepository(this.database);
    this.idempotency = new IdempotencyStore({ database: this.database, keys: idempotencyKeys, clock: this.clock });
    this.usage = new UsageReports(new UsageRepository(this.database));
    this.estimator = new CostEstimator(this.config.pricing);
    this.instanceId = loadInstanceId(this.config.data_dir);
    this.bus = this.redis
      ? new RedisEventBus({
          redis: this.redis,
          url: this.config.redis.url!,
          prefix: this.config.redis.key_prefix,
          logger: this.logger,
        })
      : new MemoryEventBus();
    this.stoppers.push(() => this.bus.close());
    this.workspaces = new WorkspaceManager({
      root: this.config.workspaces.root,
      retentionDays: this.config.workspaces.retention_days,
      clock: this.clock,
      logger: this.logger,
    });
    this.sandbox = new Sandbox({
      settings: this.config.agent.sandbox,
      limits: this.config.agent.limits,
      command: this.config.agent.command,
      runtimeDir: path.join(this.config.data_dir, 'sandbox'),
      logger: this.logger,
      hostPath: this.config.agent_env.PATH,
    });
    const sessionMetrics = new SessionMetrics(this.metrics);
    const allowPrivateTargets = this.config.webhooks.allow_private_targets;
    // Registered endpoints' signing secrets, sealed with the server secret (a rotated-out one still opens them).
    const webhookSecrets = new SecretBox(this.jwtSecret, 'webhook-endpoint-secrets', this.previousJwtSecrets);
    this.webhooks = new WebhookService({
      database: this.database,
      outbox: webhookOutbox,
      endpoints: webhookEndpoints,
      clock: this.clock,
      logger: this.logger,
      metrics: this.metrics,
      serverSecret: this.jwtSecret,
      previousServerSecrets: this.previousJwtSecrets,
      allowPrivateTargets,
      secretBox: webhookSecrets,
      audit: this.audit,
      maxAttempts: this.config.webhooks.max_attempts,
      disableAfterMs: this.config.webhooks.disable_endpoint_after_hours * 3_600_000,
    });
    this.webhookEndpoints = new WebhookEndpoints({
      database: this.database,
      endpoints: webhookEndpoints,
      outbox: webhookOutbox,
      clock: this.clock,
      audit: this.audit,
      secretBox: webhookSecrets,
      webhooks: this.webhooks,
      allowPrivateTargets,
    });
    this.background.push(this.webhooks);
    this.supervisor = new SessionSupervisor({
      database: this.database,
      sessions: sessionRows,
      clock: this.clock,
      logger: this.logger,
      ledger: this.ledger,
      estimator: this.estimator,
      runner:
        options.runner ??
        new ProcessRunner({
          command: this.config.agent.command,
          envPassthrough: this.config.agent.env_passthrough,
          timeoutMs: this.config.agent.timeout_seconds * 1000,
          killGraceMs: this.config.agent.kill_grace_seconds * 1000,
          logger: this.logger,
          baseEnv: this.config.agent_env,
          workspacesRoot: this.config.workspaces.root,
          sandbox: this.sandbox,
          pidDir: path.join(this.config.data_dir, 'agents'),
        }),
      workspaces: this.workspaces,
      bus: this.bus,
      audit: this.audit,
      metrics: sessionMetrics,
      instanceId: this.instanceId,
      reservationTtlMs: this.config.credits.reservation_ttl_seconds * 1000,
      // The final event goes out signed, committed with the session's end.
      onSessionEnd: async (session, _event, trx) => {
        const type = `session.${session.status}` as WebhookEventType;
        const data = presentSession(session, this.publicUrl.get());
        // The owner's registered endpoints that want this type, and the execute's one-off URL.
        await this.webhooks.emit(trx, {
          type,
          userIds: [session.user_id],
          tenantId: session.tenant_id,
          sessionId: session.id,
          data,
        });
        if (!session.webhook_url) return;
        await this.webhooks.enqueue(
          {
            userId: session.user_id,
            tenantId: session.tenant_id,
            sessionId: session.id,
            url: session.webhook_url,
            eventType: type,
            data,
          },
          trx,
        );
      },
    });
    this.sessions = new SessionService({
      database: this.database,
      sessions: sessionRows,
      idempotency: this.idempotency,
      clock: this.clock,
      config: this.config,
      ledger: this.ledger,
      estimator: this.estimator,
      supervisor: this.supervisor,
      audit: this.audit,
      metrics: sessionMetrics,
      instanceId: this.instanceId,
      validateWebhookUrl: (url) => void validateWebhookUrl(url, { allowPrivateTargets }),
      presentStarted: sessionPresenters(this.publicUrl).started,
      onSessionStart: async (session, trx) => {
        const data = presentSession(session, this.publicUrl.get());
        await this.webhooks.emit(trx, {
          type: 'session.started',
          userIds: [session.user_id],
          tenantId: session.tenant_id,
          sessionId: session.id,
          data,
        });
      },
    });
    this.stream = new StreamServer(
      {
        auth: this.auth,
        sessions: sessionRows,
        bus: this.bus,
        config: this.config,
        logger: this.logger,
        metrics: this.metrics,
        clock: this.clock,
        audit: this.audit,
      },
      streamOptionsFromConfig(this.config.stream),
    );
    this.monitoring = new Monitoring({
      metrics: this.metrics,
      database: this.database,
      reads: new OperationsReads(this.database),
      ledger: this.ledger,
      auth: this.auth,
      redis: this.redis,
      clock: this.clock,
      logger: this.logger,
    });
    this.background.push(this.monitoring);
    this.keyExpiry = new KeyExpiryNotices({
      database: this.database,
      keys: new ApiKeyExpiryRepository(this.database),
      clock: this.clock,
      logger: this.logger,
      webhooks: this.webhooks,
    });
    this.background.push(this.keyExpiry);
    this.background.push(
      new WorkspaceJanitor({ workspaces: this.workspaces, sessions: sessionRows, logger: this.logger }),
    );
    this.background.push(
      new CreditReaper({
        ledger: this.ledger,
        clock: this.clock,
        logger: this.logger,
        intervalMs: this.config.credits.reaper_interval_seconds * 1000,
        usedMicros: (reservation, trx) => this.supervisor.usedByExpired(reservation, trx),
        skip: (sessionId) => sessionId !== null && this.supervisor.runsHere(sessionId),
        onReaped: (reservationId) => this.supervisor.publishReaped(reservationId),
      }),
    );
    if (this.config.audit.checkpoint_interval_seconds > 0) {
      this.background.push(
        new AuditCheckpointer({
          audits,
          clock: this.clock,
          logger: this.logger,
          dataDir: this.config.audit.archive_dir,
          intervalMs: this.config.audit.checkpoint_interval_seconds * 1000,
        }),
      );
    }
    if (this.config.audit.retention_days > 0) {
      this.background.push(
        new AuditRetention({
          database: this.database,
          audits,
          clock: this.clock,
          logger: this.logger,
          archiveDir: this.config.audit.archive_dir,
          maxAgeMs: this.config.audit.retention_days * 86_400_000,
        }),
      );
    }

    const checks: HealthCheck[] = [{ name: 'database', check: () => this.database.ping() }];
    if (this.redis) {
      const redis = this.redis;
      checks.push({ name: 'redis', check: async () => void (await redis.ping()) });
    }
    if (this.config.server.min_free_disk_mb > 0) {
      // Every file system the daemon writes to: its data, the SQLite file (wherever database.url puts it), workspaces, audit archives.
      const sqliteFile = this.database.dialect === 'sqlite' ? this.config.database.url.slice('sqlite:'.length) : null;
      const disk = new DiskSpaceCheck(
        [
          this.config.data_dir,
          this.config.workspaces.root,
          this.config.audit.archive_dir,
          ...(sqliteFile && sqliteFile !== ':memory:' ? [sqliteFile] : []),
        ],
        this.config.server.min_free_disk_mb * 1024 * 1024,
        this.logger,
      );
      checks.push({ name: 'disk', check: () => disk.check() });
    }
    const limit = rateLimit({
      limiter: this.limiter,
      metrics: rateLimitMetrics,
      tiers: this.config.tiers,
      ipRequestsPerHour: this.config.limits.ip_requests_per_hour,
      onDenied: (event) => this.auditStore.recordDenialAggregated(event),
    });
    const authGuards = routeGuards({ auth: this.auth, afterAuthentication: () => [limit] });
    this.routes = [
      ...authRoutes({ auth: this.auth, users: this.users }),
      ...apiKeyRoutes({ users: this.users }),
      ...adminUserRoutes({ users: this.users }),
      ...creditRoutes({ ledger: this.ledger, idempotency: this.idempotency, users: this.users }),
      ...creditPoolRoutes({ ledger: this.ledger, idempotency: this.idempotency, audit: this.audit }),
      ...budgetRoutes({ budgets: this.budgetAdmin }),
      ...usageRoutes({
        usage: this.usage,
        users: this.users,
        audit: this.audit,
        clock: this.clock,
        timeZone: this.config.credits.budget_time_zone ?? 'UTC',
      }),
      ...sessionRoutes({ sessions: this.sessions, users: this.users, publicUrl: this.publicUrl }),
      ...streamTicketRoutes({ stream: this.stream }),
      ...webhookRoutes({ webhooks: this.webhooks, endpoints: this.webhookEndpoints, users: this.users }),
      ...adminAuditRoutes({
        audit: this.auditStore,
        query: new AuditQuery({ audits }),
        verification: new AuditVerification({
          database: this.database,
          audits,
          archiveDir: this.config.audit.archive_dir,
        }),
      }),
      ...systemRoutes({
        checks,
        metrics: this.metrics,
        version: VERSION,
        databaseId: () => this.databaseId,
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
      guards: (spec) => (spec.auth !== 'none' ? authGuards(spec) : spec.path.startsWith('/v1/') ? [limit] : []),
    });
  }

  /** Prepares storage (migrations) and starts background work. */
  async start(): Promise<void> {
    if (this.supervisor.runner instanceof ProcessRunner) this.checkAgentCommand();
    // First: a second daemon on this data directory must not touch the first one's sessions.
    this.dataDirLock = acquireDataDirLock(this.config.data_dir, { hostname: hostname() });
    await this.waitForRedis(3000);
    const report = await migrateToLatest(this.database);
    if (report.applied.length > 0) this.logger.info({ applied: report.applied }, 'migrations applied');
    this.databaseId = await ensureDatabaseId(this.database);
    await this.startSandbox();
    const resealed = await this.auth.resealSecrets();
    if (resealed.resealed > 0)
      this.logger.warn({ resealed: resealed.resealed }, 'MFA secrets moved to the current JWT_SECRET after a rotation');
    if (resealed.unreadable > 0) {
      const n = resealed.unreadable;
      this.logger.warn(
        { unreadable: n, users: resealed.unreadableUsers },
        `${n} user${n === 1 ? "'s MFA secret does" : "s' MFA secrets do"} not open with JWT_SECRET or any JWT_PREVIOUS_SECRETS entry (the secret changed without the old one kept): ` +
          'their TOTP sign-ins answer 409 MFA_UNAVAILABLE (recovery codes still work). Put the old secret in JWT_PREVIOUS_SECRETS and restart, ' +
          'or reset their MFA with keen-admin users reset-mfa <user> (keen-admin doctor lists them)',
      );
    }
    // Agents a killed predecessor left running stop before their sessions are ended.
    const runner = this.supervisor.runner;
    if (runner instanceof ProcessRunner) runner.stopOrphans();
    await this.supervisor.recoverOwned();
    for (const job of this.background) job.start();
    this.stoppers.push(async () => {
      for (const job of this.background) await job.stop();
    });
    // Stopped first on shutdown: agents end as interrupted, charged what they used.
    this.stoppers.push(() => this.supervisor.stopAll());
  }

  /**
   * A command that cannot run fails every session (`agent_not_started`, `agent_exit_N`):
   * refused at start in production, a warning otherwise.
   */
  private checkAgentCommand(): void {
    const problems = checkAgentCommand(this.config.agent.command, this.config.agent_env.PATH);
    if (problems.length === 0) return;
    if (this.config.env === 'production') throw new ConfigError(problems);
    this.logger.warn(
      { command: this.config.agent.command, problems },
      'agent.command cannot run: every session will fail (refused when env is production)',
    );
  }

  /**
   * Runs a trivial command in the agent sandbox. When it fails the daemon refuses
   * to start in production and warns (here and at every execute) otherwise.
   * Starts the egress proxy of `network: allow`.
   */
  private async startSandbox(): Promise<void> {
    const dataMode = existsSync(this.config.data_dir) ? statSync(this.config.data_dir).mode & 0o777 : null;
    if (dataMode !== null && (dataMode & 0o077) !== 0) {
      this.logger.warn(
        { data_dir: this.config.data_dir, mode: dataMode.toString(8) },
        'the data directory is readable by other users; chmod 700 it',
      );
    }
    const { mode, network } = this.config.agent.sandbox;
    if (mode === 'bubblewrap' && network === 'allow') {
      // Before the probe: the probe binds the proxy's socket like every agent's sandbox does.
      mkdirSync(path.dirname(this.sandbox.proxySocket), { recursive: true, mode: 0o700 });
      const egress = new EgressProxy({
        socketPath: this.sandbox.proxySocket,
        allowedHosts: this.config.agent.sandbox.allowed_hosts,
        logger: this.logger.child({ component: 'egress' }),
      });
      await egress.listen();
      this.stoppers.push(() => egress.close());
    }
    const probe = await this.sandbox.probe();
    if (mode === 'none') {
      this.logger.warn(
        "agent.sandbox.mode is none: agents run unconfined, as the daemon's user, and can read its secrets",
      );
      return;
    }
    if (!probe.ok) {
      if (this.config.env === 'production')
        throw new SandboxUnavailableError(`the agent sandbox does not work: ${probe.detail}`);
      this.logger.warn(
        { detail: probe.detail },
        'the agent sandbox does not work: agents run WITHOUT it (refused when KEEN_ENV=production)',
      );
      return;
    }
    this.logger.info({ detail: probe.detail }, 'agent sandbox ready');
    if (network === 'host')
      this.logger.warn(
        'agent.sandbox.network is host: agents reach every address the daemon can, its own port and stores included',
      );
  }

  /**
   * Lets the Redis connection come up before the first request, so a fresh daemon
   * does not answer 503 for a connection still in progress. A Redis that is down
   * does not stop the daemon: the limits' failure policy applies until it returns.
   */
  private async waitForRedis(timeoutMs: number): Promise<void> {
    const redis = this.redis;
    if (!redis || redis.status === 'ready') return;
    let timer: NodeJS.Timeout | undefined;
    const ready = await Promise.race([
      new Promise<boolean>((resolve) => redis.once('ready', () => resolve(true))),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!ready) this.logger.warn('redis is not reachable yet; limits follow their failure policy until it is');
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
    this.dataDirLock?.release();
    this.dataDirLock = null;
  }

  /**
   * `budget.threshold` for registered endpoints, in the admitting transaction: to
   * the key's owner, the user, or a tenant's admins.
   */
  private async announceBudgetThreshold(t: Queryable, c: ThresholdCrossing): Promise<void> {
    const b = c.budget;
    let userIds: string[];
    if (b.subject === 'user') userIds = [b.subjectId];
    else if (b.subject === 'api_key') {
      const owner = await this.accounts.credentials.with(t).apiKeyOwner(b.subjectId);
      userIds = owner !== undefined ? [owner] : [];
    } else {
      userIds = await this.accounts.users.with(t).tenantAdminIds(b.subjectId);
    }
    await this.webhooks.emit(t, {
      type: 'budget.threshold',
      userIds,
      tenantId: b.tenantId,
      data: { threshold: c.threshold, budget: presentBudgetStatus(b) },
    });
  }
}
