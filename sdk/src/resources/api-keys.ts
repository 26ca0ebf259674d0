import type { KeenClient } from '../client.js';
import type {
  ApiKey,
  ApiKeyCreateRequest,
  ApiKeyCreatedResponse,
  ApiKeyRolledResponse,
  ApiKeyUpdateRequest,
} from '../types.js';

/** Your API keys. The gateway accepts these calls with a signed-in user's token only, never with an API key. */
export class ApiKeys {
  constructor(private readonly client: KeenClient) {}

  /** Your keys (never the keys themselves). */
  async list(): Promise<ApiKey[]> {
    return (await this.client.request<{ api_keys: ApiKey[] }>('GET', '/v1/api-keys')).api_keys;
  }

  /** Creates a key; `key` (ak_live_...) is in this response only: store it now. */
  create(request: ApiKeyCreateRequest): Promise<ApiKeyCreatedResponse> {
    return this.client.request<ApiKeyCreatedResponse>('POST', '/v1/api-keys', { body: request });
  }

  /**
   * Changes a key's name, scopes, rate limit or expiry; what `patch` leaves out
   * stays as it is (`expires_at: null`: the key no longer expires). New scopes
   * must be held by your role (403 `INSUFFICIENT_SCOPE`); a revoked or expired
   * key answers 409 `INVALID_STATE`.
   */
  async update(id: string, patch: ApiKeyUpdateRequest): Promise<ApiKey> {
    return (
      await this.client.request<{ api_key: ApiKey }>('PATCH', `/v1/api-keys/${encodeURIComponent(id)}`, { body: patch })
    ).api_key;
  }

  /**
   * Gives a key a new secret under the same id; `key` (the new ak_live_...) is
   * in this response only: store it now. The old secret keeps working until
   * `previous_expires_at`: `graceSeconds` from now (default 86400, 24 h; 0:
   * it stops at once; at most 30 days). Rolling again ends the older secret at once.
   * Never retried by the client: the new secret is in the answer only, and a
   * second roll would end the secret the first one kept working. If the call
   * fails without an answer, list the key (`rolled_at`) before rolling again.
   */
  roll(id: string, options: { graceSeconds?: number } = {}): Promise<ApiKeyRolledResponse> {
    const body = options.graceSeconds === undefined ? {} : { grace_seconds: options.graceSeconds };
    return this.client.request<ApiKeyRolledResponse>('POST', `/v1/api-keys/${encodeURIComponent(id)}/roll`, {
      body,
      retry: false,
    });
  }

  /** Revokes a key; requests made with it fail from now on. */
  async revoke(id: string): Promise<ApiKey> {
    return (await this.client.request<{ api_key: ApiKey }>('DELETE', `/v1/api-keys/${encodeURIComponent(id)}`)).api_key;
  }
}
