import type { KeenClient } from '../client.js';
import { paginate } from '../internal/paginate.js';
import type {
  WebhookDelivery,
  WebhookDeliveryListQuery,
  WebhookDeliveryListResponse,
  WebhookDeliveryResponse,
  WebhookEndpoint,
  WebhookEndpointCreateRequest,
  WebhookEndpointCreatedResponse,
  WebhookEndpointListResponse,
  WebhookEndpointResponse,
  WebhookEndpointUpdateRequest,
  WebhookEventType,
  WebhookEventTypesResponse,
  WebhookSecretRotatedResponse,
} from '../types.js';

/** The event types of an endpoint: any of them, or `['*']` for all. */
export type WebhookEventTypes = ReadonlyArray<WebhookEventType | '*'>;

/** The body of `webhooks.create()`: `WebhookEndpointCreateRequest` with `event_types` as any array. */
export type WebhookCreateParams = Omit<WebhookEndpointCreateRequest, 'event_types'> & {
  event_types: WebhookEventTypes;
};

/** The body of `webhooks.update()`: what it leaves out stays as it is. */
export type WebhookUpdateParams = Omit<WebhookEndpointUpdateRequest, 'event_types'> & {
  event_types?: WebhookEventTypes;
};

/** A page of endpoints. */
export interface WebhookListParams {
  /** 1 to 200 (default 50). */
  limit?: number;
  cursor?: string;
}

/** A page of endpoints over an administrator's reach, optionally of one user. */
export interface WebhookAdminListParams extends WebhookListParams {
  /** A user id or email. */
  user_id?: string;
}

/** A page of one endpoint's deliveries, newest first. */
export interface WebhookDeliveryListParams {
  /** 1 to 100 (default 20). */
  limit?: number;
  cursor?: string;
  status?: WebhookDeliveryListQuery['status'];
}

/**
 * Registered webhook endpoints: where the gateway POSTs events (session
 * finished, low balance, budget threshold, key expiring...), signed per
 * Standard Webhooks with the endpoint's own secret; check them with
 * `verifyWebhook()`. Managing endpoints needs the `keys:manage` scope; the
 * `:id` calls act on your own endpoints, or for an administrator on any in
 * reach (another user's endpoint is a `NotFoundError`).
 */
export class Webhooks {
  constructor(private readonly client: KeenClient) {}

  /** The event types an endpoint can subscribe to, with the schema of each one's message. */
  eventTypes(): Promise<WebhookEventTypesResponse> {
    return this.client.request<WebhookEventTypesResponse>('GET', '/v1/webhooks/event-types');
  }

  /**
   * Registers an endpoint; `secret` (whsec_...) is in this response only: store
   * it now. A URL the SSRF policy refuses is a `ValidationError` (400 `INVALID_FIELD`).
   */
  create(request: WebhookCreateParams): Promise<WebhookEndpointCreatedResponse> {
    return this.client.request<WebhookEndpointCreatedResponse>('POST', '/v1/webhooks/endpoints', { body: request });
  }

  /** One page of your endpoints. */
  list(params: WebhookListParams = {}): Promise<WebhookEndpointListResponse> {
    return this.client.request<WebhookEndpointListResponse>('GET', '/v1/webhooks/endpoints', { query: { ...params } });
  }

  /** Every endpoint of yours, page after page. */
  all(params: Omit<WebhookListParams, 'cursor'> = {}): AsyncGenerator<WebhookEndpoint, void, undefined> {
    return paginate(async (cursor) => {
      const r = await this.list({ ...params, ...(cursor ? { cursor } : {}) });
      return { items: r.endpoints, next: r.next_cursor };
    });
  }

  /** One endpoint. */
  async get(id: string): Promise<WebhookEndpoint> {
    return (await this.client.request<WebhookEndpointResponse>('GET', endpointPath(id))).endpoint;
  }

  /**
   * Changes an endpoint; what `patch` leaves out stays as it is. `enabled: true`
   * re-enables an endpoint the gateway disabled (and clears `disabled_reason`).
   */
  async update(id: string, patch: WebhookUpdateParams): Promise<WebhookEndpoint> {
    return (await this.client.request<WebhookEndpointResponse>('PATCH', endpointPath(id), { body: patch })).endpoint;
  }

  /** Deletes an endpoint; its pending deliveries are dropped. */
  delete(id: string): Promise<{ success: true }> {
    return this.client.request<{ success: true }>('DELETE', endpointPath(id));
  }

  /**
   * Gives an endpoint a new signing secret; `secret` is in this response only.
   * For `graceSeconds` (default 86400, at most 604800; 0: not at all) deliveries
   * carry two signatures, the new secret's and the old one's, so a receiver can
   * switch over without losing a message (`verifyWebhook` accepts a list of secrets).
   * Never retried by the client: a second rotation would end the secret the
   * first one kept working. If the call fails without an answer, `get()` the
   * endpoint (`previous_secret_expires_at`) before rotating again.
   */
  rotateSecret(id: string, options: { graceSeconds?: number } = {}): Promise<WebhookSecretRotatedResponse> {
    const body = options.graceSeconds === undefined ? {} : { grace_seconds: options.graceSeconds };
    return this.client.request<WebhookSecretRotatedResponse>('POST', `${endpointPath(id)}/rotate-secret`, {
      body,
      retry: false,
    });
  }

  /** One page of an endpoint's deliveries, newest first, each with its `attempt_log` and `payload`. */
  deliveries(id: string, params: WebhookDeliveryListParams = {}): Promise<WebhookDeliveryListResponse> {
    return this.client.request<WebhookDeliveryListResponse>('GET', `${endpointPath(id)}/deliveries`, {
      query: { ...params },
    });
  }

  /** Every delivery of an endpoint (newest first), page after page. */
  allDeliveries(
    id: string,
    params: Omit<WebhookDeliveryListParams, 'cursor'> = {},
  ): AsyncGenerator<WebhookDelivery, void, undefined> {
    return paginate(async (cursor) => {
      const r = await this.deliveries(id, { ...params, ...(cursor ? { cursor } : {}) });
      return { items: r.deliveries, next: r.next_cursor };
    });
  }

  /** One delivery, with every attempt. */
  async delivery(id: string, deliveryId: string): Promise<WebhookDelivery> {
    return (await this.client.request<WebhookDeliveryResponse>('GET', deliveryPath(id, deliveryId))).delivery;
  }

  /**
   * Sends a delivery again, with the same message id (`webhook-id`), so a
   * receiver that saw it already can drop it. A delivery still pending or being
   * delivered is a `ConflictError` (409 `INVALID_STATE`).
   */
  async resend(id: string, deliveryId: string): Promise<WebhookDelivery> {
    return (await this.client.request<WebhookDeliveryResponse>('POST', `${deliveryPath(id, deliveryId)}/resend`))
      .delivery;
  }

  /** Sends a `ping` message to the endpoint; a disabled endpoint is a `ConflictError` (409 `INVALID_STATE`). */
  async ping(id: string): Promise<WebhookDelivery> {
    return (await this.client.request<WebhookDeliveryResponse>('POST', `${endpointPath(id)}/ping`)).delivery;
  }

  /** Administrators: one page of the endpoints in reach (platform admins: all; tenant admins: their tenant's). */
  adminList(params: WebhookAdminListParams = {}): Promise<WebhookEndpointListResponse> {
    return this.client.request<WebhookEndpointListResponse>('GET', '/v1/admin/webhooks/endpoints', {
      query: { ...params },
    });
  }
}

function endpointPath(id: string): string {
  return `/v1/webhooks/endpoints/${encodeURIComponent(id)}`;
}

function deliveryPath(id: string, deliveryId: string): string {
  return `${endpointPath(id)}/deliveries/${encodeURIComponent(deliveryId)}`;
}
