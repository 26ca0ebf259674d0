import type { WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint } from '../../../schemas/types.gen.js';
import { iso } from '../../clock.js';
import { formatCredits } from '../../credits/money.js';
import type { AttemptRow } from '../../storage/repos/webhook-deliveries.js';
import type {
  DeliveryPage,
  DeliveryView,
  EndpointPage,
  EndpointView,
  EndpointWithSecret,
} from '../../webhooks/endpoints.js';

/**
 * The presenters of what WebhookEndpoints returns (rows and views): endpoints and their
 * delivery log as the API shows them, never a sealed secret; a signing secret only in the
 * answer that made it. Outgoing webhook messages are built by the webhooks domain itself.
 */

/** An endpoint; the previous secret's expiry only while it still signs, at the time it was read. */
export function presentEndpoint({ row: r, at }: EndpointView): WebhookEndpoint {
  const previousLive =
    r.previous_secret_enc !== null &&
    r.previous_secret_expires_at !== null &&
    Number(r.previous_secret_expires_at) > at;
  return {
    id: r.id,
    user_id: r.user_id,
    url: r.url,
    description: r.description,
    event_types: JSON.parse(r.event_types) as string[],
    enabled: r.enabled === 1,
    disabled_reason: r.disabled_reason,
    disabled_at: r.disabled_at === null ? null : iso(Number(r.disabled_at)),
    failing_since: r.failing_since === null ? null : iso(Number(r.failing_since)),
    low_balance_threshold: r.low_balance_threshold === null ? null : formatCredits(Number(r.low_balance_threshold)),
    previous_secret_expires_at: previousLive ? iso(Number(r.previous_secret_expires_at)) : null,
    created_at: iso(Number(r.created_at)),
    updated_at: iso(Number(r.updated_at)),
  };
}

/** An endpoint just created or given a new secret: `{endpoint, secret}`, the secret in this answer only. */
export const presentEndpointWithSecret = (v: EndpointWithSecret): { endpoint: WebhookEndpoint; secret: string } => ({
  endpoint: presentEndpoint(v),
  secret: v.secret,
});

export const presentEndpointPage = (p: EndpointPage): { endpoints: WebhookEndpoint[]; next_cursor: string | null } => ({
  endpoints: p.endpoints.map(presentEndpoint),
  next_cursor: p.nextCursor,
});

function presentAttempt(a: AttemptRow): WebhookDeliveryAttempt {
  return {
    attempt: Number(a.attempt),
    started_at: iso(Number(a.started_at)),
    duration_ms: Number(a.duration_ms),
    status_code: a.status_code,
    outcome: a.outcome,
    error: a.error,
    response_excerpt: a.response_excerpt,
  };
}

/** A delivery with its payload, exactly as sent, and every attempt; when the next is due only while one is. */
export function presentDelivery({ row: r, attempts }: DeliveryView): WebhookDelivery {
  return {
    id: r.id,
    endpoint_id: r.endpoint_id,
    event_type: r.event_type,
    session_id: r.session_id,
    status: r.status,
    attempts: Number(r.attempts),
    next_attempt_at: r.status === 'pending' || r.status === 'delivering' ? iso(Number(r.next_attempt_at)) : null,
    last_status_code: r.last_status_code,
    last_error: r.last_error,
    created_at: iso(Number(r.created_at)),
    delivered_at: r.delivered_at === null ? null : iso(Number(r.delivered_at)),
    payload: JSON.parse(r.payload) as Record<string, unknown>,
    attempt_log: attempts.map(presentAttempt),
  };
}

export const presentDeliveryPage = (
  p: DeliveryPage,
): { deliveries: WebhookDelivery[]; next_cursor: string | null } => ({
  deliveries: p.deliveries.map(presentDelivery),
  next_cursor: p.nextCursor,
});
