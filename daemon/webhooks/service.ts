import type { Counter, Histogram } from 'prom-client';
import { iso, type Clock } from '../clock.js';
import { newId } from '../ids.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { Periodic } from '../periodic.js';
import type { Database, Queryable } from '../storage/database.js';
import type { AuditLogger } from '../audit/types.js';
import type { SecretBox } from '../auth/secret-box.js';
import { wants, type WebhookEventType, type WebhookMessage } from './events.js';
import type { WebhookEndpointRepository } from '../storage/repos/webhook-endpoints.js';
import type { DeliveryRow, WebhookOutbox } from '../storage/repos/webhook-deliveries.js';
import { WebhookSender, type AttemptResult, type Resolver } from './sender.js';
import { deriveSigningSecret } from './signing.js';

export type { WebhookEventType, WebhookMessage };

export interface EnqueueWebhook {
  userId: string;
  tenantId: string | null;
  sessionId: string | null;
  url: string;
  eventType: WebhookEventType;
  data: unknown;
  /** The registered endpoint it goes to; absent for an execute's one-off `webhook_url`. */
  endpointId?: string | null;
}

/** An event for registered endpoints: sent to every enabled endpoint of `userIds` that wants its type. */
export interface WebhookEvent {
  type: WebhookEventType;
  userIds: string[];
  tenantId: string | null;
  sessionId?: string | null;
  data: unknown;
  /** Further choice per endpoint (credits.low_balance: the endpoint's own threshold). */
  accept?: (endpoint: { low_balance_threshold: number | null }) => boolean;
  /** `data` for one endpoint, when it depends on the endpoint (its threshold); otherwise `data`. */
  dataFor?: (endpoint: { low_balance_threshold: number | null }) => unknown;
}

/** Metric outcome labels: `retry` is a failed attempt that will be tried again. */
export type DeliveryOutcome = 'delivered' | 'retry' | 'failed' | 'refused';

export interface WebhookServiceOptions {
  /** Opens the transaction that records an attempt. */
  database: Database;
  /** The deliveries and their attempts (built by the composition root). */
  outbox: WebhookOutbox;
  /** Registered endpoints: who an event goes to, their secrets and health. */
  endpoints: WebhookEndpointRepository;
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  /** The server secret signing secrets are derived from (the JWT secret). */
  serverSecret: Buffer;
  /** Rotated-out server secrets (JWT_PREVIOUS_SECRETS): deliveries are signed with their derived secrets too. */
  previousServerSecrets?: Buffer[];
  /** `webhooks.allow_private_targets`. */
  allowPrivateTargets: boolean;
  /** Attempts before a delivery is `failed`. Default 9 (with the default backoff, over a day). */
  maxAttempts?: number;
  /** Opens registered endpoints' sealed signing secrets. */
  secretBox?: SecretBox;
  /** Records `webhook.endpoint_disabled`. */
  audit?: AuditLogger;
  /** An endpoint whose every attempt failed this long is disabled. Default 72 h. */
  disableAfterMs?: number;
  /** Delay before the next attempt, given the attempts made so far. Default: `defaultBackoffMs`. */
  backoffMs?: (attempt: number) => number;
  /** Deliveries in flight at once per worker. Default 4. */
  concurrency?: number;
  /** How often the worker looks for due deliveries. Default 1 s. */
  pollIntervalMs?: number;
  /** How long a claim holds a delivery; after that another worker retakes it. Default: total timeout + 50 s. */
  leaseMs?: number;
  connectTimeoutMs?: number;
  totalTimeoutMs?: number;
  maxResponseBytes?: number;
  /** Name resolution for the connect-time check; tests inject one. */
  resolver?: Resolver;
}

/** The delay after attempt n (1-based): 5 s, 1 min, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, then 14 h. */
export const BACKOFF_SCHEDULE_MS = [
  5_000, 60_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 50_400_000,
] as const;

/**
 * Exponential backoff with jitter over more than a day: the delay after attempt
 * n is BACKOFF_SCHEDULE_MS[n-1], drawn from [80%, 100%] of it, so a receiver
 * coming back from an outage is not hit by every retry at the same instant.
 * With the default 9 attempts the last one comes 25 to 31.6 hours after the first.
 */
export function defaultBackoffMs(attempt: number, random: () => number = Math.random): number {
  const base = BACKOFF_SCHEDULE_MS[Math.min(Math.max(1, attempt), BACKOFF_SCHEDULE_MS.length) - 1]!;
  return Math.round(base * 0.8 + random() * base * 0.2);
}

export const DEFAULT_MAX_ATTEMPTS = 9;
const DEFAULT_DISABLE_AFTER_MS = 72 * 3_600_000;

/** Deliveries handled by one `deliverDueNow()` pass, by outcome. */
export type DeliveryPass = Record<DeliveryOutcome, number>;

/** One pass stops after this many deliveries, so `stop()` is never kept waiting by a backlog. */
const MAX_PER_PASS = 500;

/**
 * Webhooks through a durable outbox. `enqueue()` writes the message in the
 * caller's transaction, so a session's final status and its webhook commit or
 * roll back together; a worker (one per daemon, several daemons may share the
 * database) claims due deliveries, POSTs them signed, and records the outcome:
 * delivered, retried later with backoff, or failed after `maxAttempts` or when
 * the target is refused. Delivery is at least once: a worker that dies after
 * the receiver answered but before recording it leaves a claim that lapses and
 * is retried, with the same `webhook-id`, which receivers use to deduplicate.
 */
export class WebhookService {
  private readonly outbox: WebhookOutbox;
  private readonly sender: WebhookSender;
  private readonly maxAttempts: number;
  private readonly backoffMs: (attempt: number) => number;
  private readonly concurrency: number;
  private readonly pollIntervalMs: number;
  private readonly leaseMs: number;
  private readonly deliveries: Counter<'outcome'>;
  private readonly latency: Histogram<'outcome'>;
  private readonly periodic = new Periodic(() => this.pass());

  constructor(private readonly options: WebhookServiceOptions) {
    this.outbox = options.outbox;
    this.sender = new WebhookSender({
      allowPrivateTargets: options.allowPrivateTargets,
      ...(options.connectTimeoutMs !== undefined ? { connectTimeoutMs: options.connectTimeoutMs } : {}),
      ...(options.totalTimeoutMs !== undefined ? { totalTimeoutMs: options.totalTimeoutMs } : {}),
      ...(options.maxResponseBytes !== undefined ? { maxResponseBytes: options.maxResponseBytes } : {}),
      ...(options.resolver ? { resolver: options.resolver } : {}),
    });
    this.maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    this.backoffMs = options.backoffMs ?? ((attempt) => defaultBackoffMs(attempt));
    this.concurrency = Math.max(1, options.concurrency ?? 4);
    this.pollIntervalMs = options.pollIntervalMs ?? 1_000;
    this.leaseMs = options.leaseMs ?? this.sender.maxAttemptMs + 50_000;
    const registry = options.metrics.registry;
    // Reuse when another service on the same registry made them already (tests run several workers).
    this.deliveries =
      (registry.getSingleMetric('keen_webhook_deliveries_total') as Counter<'outcome'> | undefined) ??
      options.metrics.counter('keen_webhook_deliveries_total', 'Webhook delivery attempts, by outcome.', ['outcome']);
    this.latency =
      (registry.getSingleMetric('keen_webhook_delivery_duration_seconds') as Histogram<'outcome'> | undefined) ??
      options.metrics.histogram(
        'keen_webhook_delivery_duration_seconds',
        'Duration of one webhook delivery attempt, by outcome.',
        ['outcome'],
        [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      );
  }

  /** The `whsec_...` secret the user's webhooks are signed with (derived, never stored). */
  signingSecretFor(userId: string): string {
    return deriveSigningSecret(this.options.serverSecret, userId);
  }

  /**
   * Queues one message. Pass the caller's transaction as `trx` so the message
   * exists exactly when the change it reports does. The URL is not validated
   * here (it was at the API edge, and a refusal must not roll back the
   * caller's work); the worker validates it again before every attempt.
   */
  async enqueue(input: EnqueueWebhook, trx?: Queryable): Promise<{ id: string }> {
    const now = this.options.clock.now();
    const id = newId('whk', now);
    const message: WebhookMessage = { id, type: input.eventType, timestamp: iso(now), data: input.data };
    await this.outbox.insert(
      {
        id,
        user_id: input.userId,
        tenant_id: input.tenantId,
        session_id: input.sessionId,
        url: input.url,
        event_type: input.eventType,
        payload: JSON.stringify(message),
        next_attempt_at: now,
        created_at: now,
        updated_at: now,
        endpoint_id: input.endpointId ?? null,
      },
      trx,
    );
    return { id };
  }

  /**
   * Queues `event` for every enabled registered endpoint of its users that wants
   * its type, in `trx` (the transaction of the change it reports). Each endpoint
   * gets its own delivery, with its own stable id. Returns the delivery ids.
   */
  async emit(trx: Queryable, event: WebhookEvent): Promise<string[]> {
    if (event.userIds.length === 0) return [];
    const endpoints = await this.options.endpoints.enabledOf(trx, event.userIds);
    const ids: string[] = [];
    for (const ep of endpoints) {
      if (!wants(JSON.parse(ep.event_types) as string[], event.type)) continue;
      const view = {
        low_balance_threshold: ep.low_balance_threshold === null ? null : Number(ep.low_balance_threshold),
      };
      if (event.accept && !event.accept(view)) continue;
      const data = event.dataFor ? event.dataFor(view) : event.data;
      const { id } = await this.enqueue(
        {
          userId: ep.user_id,
          tenantId: ep.tenant_id,
          sessionId: event.sessionId ?? null,
          url: ep.url,
          eventType: event.type,
          data,
          endpointId: ep.id,
        },
        trx,
      );
      ids.push(id);
    }
    return ids;
  }

  /** Starts the worker: a pass every `pollIntervalMs`, never two at once. */
  start(): void {
    this.periodic.start(this.pollIntervalMs, { tick: () => void this.tick() });
  }

  /** Stops the worker and waits for the pass in flight (bounded by the attempt timeout). */
  stop(): Promise<void> {
    return this.periodic.stop();
  }

  private async tick(): Promise<void> {
    await this.deliverDueNow().catch((err: unknown) => {
      this.options.logger.warn(
        { err: { message: err instanceof Error ? err.message : String(err) } },
        'webhook delivery pass failed',
      );
    });
  }

  /**
   * One pass: attempts every delivery due now, `concurrency` at a time, each at
   * most once per pass (a retry due immediately waits for the next pass).
   * Shares the worker's pass when one is running.
   */
  deliverDueNow(): Promise<DeliveryPass> {
    return this.periodic.run();
  }

  private async pass(): Promise<DeliveryPass> {
    const counts: DeliveryPass = { delivered: 0, retry: 0, failed: 0, refused: 0 };
    const abandoned = await this.outbox.failExhausted(this.options.clock.now(), this.maxAttempts);
    if (abandoned > 0) {
      counts.failed += abandoned;
      this.deliveries.inc({ outcome: 'failed' }, abandoned);
      this.options.logger.warn(
        { abandoned },
        'webhook deliveries failed: their last attempt never reported an outcome',
      );
    }
    const handled: string[] = [];
    while (handled.length < MAX_PER_PASS) {
      const batch = await this.outbox.claimDue({
        now: this.options.clock.now(),
        limit: this.concurrency,
        leaseMs: this.leaseMs,
        maxAttempts: this.maxAttempts,
        exclude: handled,
      });
      if (batch.length === 0) break;
      const outcomes = await Promise.all(batch.map((row) => this.attempt(row)));
      for (const [i, row] of batch.entries()) {
        handled.push(row.id);
        const outcome = outcomes[i];
        if (outcome) counts[outcome] += 1;
      }
    }
    return counts;
  }

  /** Runs one claimed attempt and records it; null when the outcome could not be recorded. */
  private async attempt(row: DeliveryRow): Promise<DeliveryOutcome | null> {
    const { clock, logger } = this.options;
    const attempt = row.attempts;
    const target = await this.targetOf(row);
    if ('skip' in target) {
      // The endpoint was deleted or disabled since the event: nothing is sent.
      const now = clock.now();
      const recorded = await this.outbox.record(row.id, attempt, {
        status: 'failed',
        last_status_code: null,
        last_error: target.skip,
        updated_at: now,
      });
      if (recorded) this.deliveries.inc({ outcome: 'failed' });
      return recorded ? 'failed' : null;
    }
    const startedAt = clock.now();
    let result: AttemptResult;
    try {
      result = await this.sender.send({
        url: target.url,
        id: row.id,
        timestampSeconds: Math.floor(startedAt / 1000),
        body: row.payload,
        secret: target.secrets[0]!,
        previousSecrets: target.secrets.slice(1),
      });
    } catch (err) {
      // send() does not throw; if it ever does, count it as a failed attempt rather than lose the row.
      result = { outcome: 'failed', statusCode: null, error: 'internal: sender error', durationMs: 0 };
      logger.error(
        { err: { message: err instanceof Error ? err.message : String(err) }, delivery_id: row.id },
        'webhook sender threw',
      );
    }
    const now = clock.now();
    const outcome: DeliveryOutcome =
      result.outcome === 'delivered'
        ? 'delivered'
        : result.outcome === 'refused'
          ? 'refused'
          : attempt >= this.maxAttempts + row.resends
            ? 'failed'
            : 'retry';
    let recorded: boolean;
    let disabled: { reason: string } | null = null;
    try {
      recorded = await this.options.database.transaction(async (trx) => {
        const ok = await this.outbox.record(
          row.id,
          attempt,
          outcome === 'delivered'
            ? {
                status: 'delivered',
                last_status_code: result.statusCode,
                last_error: null,
                delivered_at: now,
                updated_at: now,
              }
            : outcome === 'retry'
              ? {
                  status: 'pending',
                  next_attempt_at: now + Math.max(0, this.backoffMs(attempt)),
                  last_status_code: result.statusCode,
                  last_error: result.error,
                  updated_at: now,
                }
              : { status: 'failed', last_status_code: result.statusCode, last_error: result.error, updated_at: now },
          trx,
        );
        if (!ok) return false;
        await this.outbox.insertAttempt(trx, {
          delivery_id: row.id,
          attempt,
          endpoint_id: row.endpoint_id,
          started_at: startedAt,
          duration_ms: Math.round(result.durationMs),
          status_code: result.statusCode,
          outcome: result.outcome,
          error: result.error,
          response_excerpt: result.responseExcerpt ?? null,
        });
        if (row.endpoint_id) disabled = await this.trackEndpoint(trx, row.endpoint_id, result, now);
        return true;
      });
    } catch (err) {
      // The claim lapses and another pass retries the delivery.
      logger.warn(
        { err: { message: err instanceof Error ? err.message : String(err) }, delivery_id: row.id },
        'could not record a webhook attempt',
      );
      return null;
    }
    if (!recorded) {
      logger.warn(
        { delivery_id: row.id, attempt },
        'webhook attempt finished after its claim lapsed; outcome not recorded',
      );
      return null;
    }
    this.deliveries.inc({ outcome });
    this.latency.observe({ outcome }, result.durationMs / 1000);
    const log = {
      delivery_id: row.id,
      endpoint_id: row.endpoint_id,
      session_id: row.session_id,
      event_type: row.event_type,
      attempt,
      outcome,
      status_code: result.statusCode,
      error: result.error,
    };
    if (outcome === 'delivered' || outcome === 'retry') logger.info(log, 'webhook attempt');
    else logger.warn(log, 'webhook delivery failed for good');
    if (disabled)
      logger.warn(
        { endpoint_id: row.endpoint_id, reason: (disabled as { reason: string }).reason },
        'webhook endpoint disabled',
      );
    return outcome;
  }

  /** Where a delivery goes and what signs it: its endpoint's URL and secrets, or the one-off URL and the user's derived secret. */
  private async targetOf(row: DeliveryRow): Promise<{ url: string; secrets: string[] } | { skip: string }> {
    if (!row.endpoint_id) {
      return {
        url: row.url,
        secrets: [
          this.signingSecretFor(row.user_id),
          ...(this.options.previousServerSecrets ?? []).map((s) => deriveSigningSecret(s, row.user_id)),
        ],
      };
    }
    const ep = await this.options.endpoints.target(row.endpoint_id);
    if (!ep) return { skip: 'endpoint deleted' };
    if (ep.enabled !== 1) return { skip: 'endpoint disabled' };
    const box = this.options.secretBox;
    if (!box) return { skip: 'internal: no secret box for endpoint secrets' };
    const now = this.options.clock.now();
    const secrets = [box.open(ep.secret_enc)];
    if (ep.previous_secret_enc && ep.previous_secret_expires_at !== null && Number(ep.previous_secret_expires_at) > now)
      secrets.push(box.open(ep.previous_secret_enc));
    return { url: ep.url, secrets };
  }

  /**
   * An endpoint's health, in the attempt's transaction: a delivered attempt
   * clears `failing_since`; a failed one sets it (first failure) and, once it
   * has failed for `disableAfterMs`, disables the endpoint with the reason and
   * audits it. Returns the reason when it was disabled now.
   */
  private async trackEndpoint(
    trx: Queryable,
    endpointId: string,
    result: AttemptResult,
    now: number,
  ): Promise<{ reason: string } | null> {
    if (result.outcome === 'delivered') {
      await this.options.endpoints.clearFailing(trx, endpointId);
      return null;
    }
    const ep = await this.options.endpoints.health(trx, endpointId);
    if (!ep || ep.enabled !== 1) return null;
    if (ep.failing_since === null) {
      await this.options.endpoints.markFailing(trx, endpointId, now);
      return null;
    }
    const since = Number(ep.failing_since);
    const disableAfterMs = this.options.disableAfterMs ?? DEFAULT_DISABLE_AFTER_MS;
    if (now - since < disableAfterMs) return null;
    const reason = `every delivery failed since ${iso(since)} (last: ${result.error ?? 'error'})`.slice(0, 500);
    await this.options.endpoints.disable(trx, endpointId, reason, now);
    await this.options.audit?.record(
      {
        action: 'webhook.endpoint_disabled',
        outcome: 'failure',
        actor: { type: 'system', id: null },
        tenantId: ep.tenant_id,
        target: { type: 'webhook_endpoint', id: endpointId },
        details: { user_id: ep.user_id, failing_since: iso(since), reason },
      },
      trx,
    );
    return { reason };
  }
}
