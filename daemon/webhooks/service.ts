import type { Counter, Histogram } from 'prom-client';
import { iso, type Clock } from '../clock.js';
import { newId } from '../ids.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { Periodic } from '../periodic.js';
import type { Database, Queryable } from '../storage/database.js';
import type { SessionStatus } from '../storage/tables/sessions.js';
import { WebhookOutbox, type DeliveryRow } from './outbox.js';
import { WebhookSender, type AttemptResult, type Resolver } from './sender.js';
import { deriveSigningSecret } from './signing.js';

/** Event types sent: one per final session status. */
export type WebhookEventType = `session.${Exclude<SessionStatus, 'running'>}`;

/** The JSON body of every webhook. `id` equals the `webhook-id` header; `timestamp` is when the event happened (ISO 8601). */
export interface WebhookMessage<T = unknown> {
  id: string;
  type: WebhookEventType;
  timestamp: string;
  data: T;
}

export interface EnqueueWebhook {
  userId: string;
  tenantId: string | null;
  sessionId: string | null;
  url: string;
  eventType: WebhookEventType;
  data: unknown;
}

/** Metric outcome labels: `retry` is a failed attempt that will be tried again. */
export type DeliveryOutcome = 'delivered' | 'retry' | 'failed' | 'refused';

export interface WebhookServiceOptions {
  database: Database;
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  /** The server secret signing secrets are derived from (the JWT secret). */
  serverSecret: Buffer;
  /** Rotated-out server secrets (JWT_PREVIOUS_SECRETS): deliveries are signed with their derived secrets too. */
  previousServerSecrets?: Buffer[];
  /** `webhooks.allow_private_targets`. */
  allowPrivateTargets: boolean;
  /** Attempts before a delivery is `failed`. Default 6. */
  maxAttempts?: number;
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

/**
 * Jittered exponential backoff: about 2 s, 8 s, 32 s, 2 min, 8.5 min, then
 * 10 min, each drawn from [base/2, base] so a receiver coming back from an
 * outage is not hit by every retry at the same instant.
 */
export function defaultBackoffMs(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(2_000 * 4 ** Math.max(0, attempt - 1), 600_000);
  return Math.round(base / 2 + (random() * base) / 2);
}

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
    this.outbox = new WebhookOutbox(options.database);
    this.sender = new WebhookSender({
      allowPrivateTargets: options.allowPrivateTargets,
      ...(options.connectTimeoutMs !== undefined ? { connectTimeoutMs: options.connectTimeoutMs } : {}),
      ...(options.totalTimeoutMs !== undefined ? { totalTimeoutMs: options.totalTimeoutMs } : {}),
      ...(options.maxResponseBytes !== undefined ? { maxResponseBytes: options.maxResponseBytes } : {}),
      ...(options.resolver ? { resolver: options.resolver } : {}),
    });
    this.maxAttempts = options.maxAttempts ?? 6;
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
      },
      trx,
    );
    return { id };
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
      this.options.logger.warn({ err: { message: err instanceof Error ? err.message : String(err) } }, 'webhook delivery pass failed');
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
      this.options.logger.warn({ abandoned }, 'webhook deliveries failed: their last attempt never reported an outcome');
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
    let result: AttemptResult;
    try {
      result = await this.sender.send({
        url: row.url,
        id: row.id,
        timestampSeconds: Math.floor(clock.now() / 1000),
        body: row.payload,
        secret: this.signingSecretFor(row.user_id),
        previousSecrets: (this.options.previousServerSecrets ?? []).map((s) => deriveSigningSecret(s, row.user_id)),
      });
    } catch (err) {
      // send() does not throw; if it ever does, count it as a failed attempt rather than lose the row.
      result = { outcome: 'failed', statusCode: null, error: 'internal: sender error', durationMs: 0 };
      logger.error({ err: { message: err instanceof Error ? err.message : String(err) }, delivery_id: row.id }, 'webhook sender threw');
    }
    const now = clock.now();
    let outcome: DeliveryOutcome;
    let recorded: boolean;
    try {
      if (result.outcome === 'delivered') {
        outcome = 'delivered';
        recorded = await this.outbox.record(row.id, attempt, {
          status: 'delivered',
          last_status_code: result.statusCode,
          last_error: null,
          delivered_at: now,
          updated_at: now,
        });
      } else if (result.outcome === 'refused' || attempt >= this.maxAttempts) {
        outcome = result.outcome === 'refused' ? 'refused' : 'failed';
        recorded = await this.outbox.record(row.id, attempt, {
          status: 'failed',
          last_status_code: result.statusCode,
          last_error: result.error,
          updated_at: now,
        });
      } else {
        outcome = 'retry';
        recorded = await this.outbox.record(row.id, attempt, {
          status: 'pending',
          next_attempt_at: now + Math.max(0, this.backoffMs(attempt)),
          last_status_code: result.statusCode,
          last_error: result.error,
          updated_at: now,
        });
      }
    } catch (err) {
      // The claim lapses and another pass retries the delivery.
      logger.warn({ err: { message: err instanceof Error ? err.message : String(err) }, delivery_id: row.id }, 'could not record a webhook attempt');
      return null;
    }
    if (!recorded) {
      logger.warn({ delivery_id: row.id, attempt }, 'webhook attempt finished after its claim lapsed; outcome not recorded');
      return null;
    }
    this.deliveries.inc({ outcome });
    this.latency.observe({ outcome }, result.durationMs / 1000);
    const log = { delivery_id: row.id, session_id: row.session_id, event_type: row.event_type, attempt, outcome, status_code: result.statusCode, error: result.error };
    if (outcome === 'delivered' || outcome === 'retry') logger.info(log, 'webhook attempt');
    else logger.warn(log, 'webhook delivery failed for good');
    return outcome;
  }
}
