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
  };
}
