/**
 * The webhook event catalogue (docs/webhooks.md, "Event types"): every type an
 * endpoint can subscribe to, what it means, and the JSON Schema of its message
 * (schemas/api/<schema>.json, listed in /openapi.json under `webhooks`).
 */
export const WEBHOOK_EVENTS = {
  'session.started': {
    schema: 'WebhookSessionEvent',
    description: 'A session was admitted and its agent is starting; `data` is the session.',
  },
  'session.completed': {
    schema: 'WebhookSessionEvent',
    description:
      'A session ended completed; `data` is the session as GET /v1/sessions/:id shows it then (final cost, usage, phase, last_seq).',
  },
  'session.failed': {
    schema: 'WebhookSessionEvent',
    description: 'A session ended failed (the agent crashed, exited non-zero or broke the protocol).',
  },
  'session.cancelled': {
    schema: 'WebhookSessionEvent',
    description: 'A session ended because its owner or an administrator cancelled it.',
  },
  'session.budget_exhausted': {
    schema: 'WebhookSessionEvent',
    description: 'A session ended because it used its cost budget (its reservation).',
  },
  'session.timed_out': {
    schema: 'WebhookSessionEvent',
    description: 'A session ended because it ran longer than agent.timeout_seconds.',
  },
  'session.interrupted': {
    schema: 'WebhookSessionEvent',
    description: 'A session ended because its daemon went away (a crash, a restart, a lost lease).',
  },
  'credits.low_balance': {
    schema: 'WebhookLowBalanceEvent',
    description: "A charge took the endpoint owner's balance below the endpoint's low_balance_threshold.",
  },
  'budget.threshold': {
    schema: 'WebhookBudgetThresholdEvent',
    description:
      'A budget of the owner (of their key, of them, or for tenant admins of their tenant) crossed a threshold this period.',
  },
  'api_key.expiring': {
    schema: 'WebhookApiKeyExpiringEvent',
    description: "One of the owner's API keys expires within 7 days (sent once per key).",
  },
  ping: {
    schema: 'WebhookPingEvent',
    description: 'A test message, sent on request (POST /v1/webhooks/endpoints/:id/ping).',
  },
} as const;

export type WebhookEventType = keyof typeof WEBHOOK_EVENTS;
export const WEBHOOK_EVENT_TYPES = Object.keys(WEBHOOK_EVENTS) as WebhookEventType[];

/** The JSON body of every webhook. `id` equals the `webhook-id` header; `timestamp` is when the event happened (ISO 8601). */
export interface WebhookMessage<T = unknown> {
  id: string;
  type: WebhookEventType;
  timestamp: string;
  data: T;
}

/** True when an endpoint subscribed to `types` (a JSON array, `["*"]` for all) wants `type`. */
export function wants(types: readonly string[], type: WebhookEventType): boolean {
  return types.includes('*') || types.includes(type);
}
