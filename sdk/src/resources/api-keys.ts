import type { KeenClient } from '../client.js';
import type { ApiKey, ApiKeyCreateRequest, ApiKeyCreatedResponse } from '../types.js';

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

  /** Revokes a key; requests made with it fail from now on. */
  async revoke(id: string): Promise<ApiKey> {
    return (await this.client.request<{ api_key: ApiKey }>('DELETE', `/v1/api-keys/${encodeURIComponent(id)}`)).api_key;
  }
}
