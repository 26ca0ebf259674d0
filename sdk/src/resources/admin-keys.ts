import type { KeenClient } from '../client.js';
import type {
  AdminApiKeyCreateRequest,
  ApiKey,
  ApiKeyCreatedResponse,
  ApiKeyListResponse,
  ApiKeyResponse,
  ApiKeyRolledResponse,
  ApiKeyUpdateRequest,
} from '../types.js';

/** Parameters of `adminKeys.list()`. */
export interface AdminKeyListParams {
  /** Only this user's keys: an id or an email (`NotFoundError` when not in reach). Default: every key in reach. */
  user_id?: string;
  /** At most this many keys, 1 to 200 (default 50). */
  limit?: number;
}

/**
 * API keys of any user in reach, for administrators (a credential with the
 * `admin` scope, an API key as well as a token): the calls of `client.apiKeys`
 * over `/v1/admin/api-keys`. A platform admin reaches every key, a tenant admin
 * the keys of its tenant's users; any other key is a `NotFoundError`. New
 * scopes must be held by the owner's role and by the credential making the
 * change (403 `INSUFFICIENT_SCOPE`).
 */
export class AdminKeys {
  constructor(private readonly client: KeenClient) {}

  /**
   * Creates a key for `user_id` (an id or email), optionally with a `budget`;
   * `key` (ak_live_...) is in this response only: hand it over now.
   */
  create(request: AdminApiKeyCreateRequest): Promise<ApiKeyCreatedResponse> {
    return this.client.request<ApiKeyCreatedResponse>('POST', '/v1/admin/api-keys', { body: request });
  }

  /** The keys of one user, or of everyone in reach (never the keys themselves). */
  async list(params: AdminKeyListParams = {}): Promise<ApiKey[]> {
    return (await this.client.request<ApiKeyListResponse>('GET', '/v1/admin/api-keys', { query: { ...params } }))
      .api_keys;
  }

  /**
   * Changes a key's name, scopes, rate limit, expiry or budget; what `patch`
   * leaves out stays (`expires_at: null`: it no longer expires). A revoked or
   * expired key is a `ConflictError` (409 `INVALID_STATE`).
   */
  async update(id: string, patch: ApiKeyUpdateRequest): Promise<ApiKey> {
    return (await this.client.request<ApiKeyResponse>('PATCH', keyPath(id), { body: patch })).api_key;
  }

  /**
   * Gives a key a new secret under the same id; `key` is in this response only.
   * The old secret keeps working until `previous_expires_at`: `graceSeconds`
   * from now (default 86400; 0: it stops at once; at most 30 days). Never
   * retried by the client, like `apiKeys.roll`: a lost answer must not roll
   * twice (list the key and check `rolled_at` before rolling again).
   */
  roll(id: string, options: { graceSeconds?: number } = {}): Promise<ApiKeyRolledResponse> {
    const body = options.graceSeconds === undefined ? {} : { grace_seconds: options.graceSeconds };
    return this.client.request<ApiKeyRolledResponse>('POST', `${keyPath(id)}/roll`, { body, retry: false });
  }

  /** Revokes a key at once; requests made with it fail from now on. */
  async revoke(id: string): Promise<ApiKey> {
    return (await this.client.request<ApiKeyResponse>('DELETE', keyPath(id))).api_key;
  }
}

function keyPath(id: string): string {
  return `/v1/admin/api-keys/${encodeURIComponent(id)}`;
}
