/** Webhook deliveries (migration 0006_webhooks). */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface WebhookTables {}
