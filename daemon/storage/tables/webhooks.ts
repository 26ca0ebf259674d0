/** Webhook deliveries (migration 0006_webhooks): the durable outbox. Times in epoch ms. */
export type WebhookDeliveryStatus = 'pending' | 'delivering' | 'delivered' | 'failed';

export interface WebhookTables {
  webhook_deliveries: {
    /** `whk_...`; also the `webhook-id` header and the payload's `id`, stable across retries. */
    id: string;
    user_id: string;
    tenant_id: string | null;
    session_id: string | null;
    url: string;
    event_type: string;
    /** JSON text of the message body, exactly the bytes every attempt sends. */
    payload: string;
    status: WebhookDeliveryStatus;
    /** Attempts started; also the claim's fencing token. */
    attempts: number;
    /** When pending: when the next attempt is due. When delivering: when the claim lapses. */
    next_attempt_at: number;
    last_status_code: number | null;
    /** Short and secret-free: never the URL, a header or a body. */
    last_error: string | null;
    created_at: number;
    updated_at: number;
    delivered_at: number | null;
    /** The registered endpoint it goes to; null for an execute's one-off `webhook_url` (0013). */
    endpoint_id: string | null;
    /** Resends asked for; each allows one attempt beyond the limit (0013). */
    resends: number;
  };
  /** Registered endpoints (migration 0013_webhook_endpoints). */
  webhook_endpoints: {
    /** `wep_...` */
    id: string;
    user_id: string;
    tenant_id: string | null;
    url: string;
    description: string | null;
    /** JSON array of event types, or ["*"]. */
    event_types: string;
    enabled: number;
    /** Why the gateway disabled it; null when enabled or disabled by its owner. */
    disabled_reason: string | null;
    disabled_at: number | null;
    /** Since when every attempt failed; null while it delivers. */
    failing_since: number | null;
    /** Micro-credits: `credits.low_balance` when a charge takes the balance below it. */
    low_balance_threshold: number | null;
    /** The signing secret (whsec_...), sealed with the server secret. */
    secret_enc: string;
    previous_secret_enc: string | null;
    previous_secret_expires_at: number | null;
    created_at: number;
    updated_at: number;
  };
  /** Every attempt of every delivery: the delivery log. */
  webhook_attempts: {
    delivery_id: string;
    attempt: number;
    endpoint_id: string | null;
    started_at: number;
    duration_ms: number;
    status_code: number | null;
    outcome: 'delivered' | 'failed' | 'refused';
    /** Short and secret-free. */
    error: string | null;
    /** The first bytes (at most 1 KiB) of the receiver's answer, as text. */
    response_excerpt: string | null;
  };
}
