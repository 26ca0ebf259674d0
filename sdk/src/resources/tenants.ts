import type { KeenClient } from '../client.js';
import { paginate } from '../internal/paginate.js';
import type {
  CreditPool,
  CreditPoolListResponse,
  Tenant,
  TenantCreditGrantRequest,
  TenantCreditGrantResponse,
  TenantCreditPoolResponse,
  TenantCreateRequest,
  TenantListResponse,
  TenantResponse,
} from '../types.js';

/**
 * Tenants and their credit pools, for administrators (a credential with the
 * `admin` scope). A platform admin sees every tenant and grants into any pool;
 * a tenant admin sees its own tenant and pool, and hands the pool's credits to
 * its members with `POST /v1/admin/credits/grant`. Amounts are decimal credits.
 */
export class Tenants {
  constructor(private readonly client: KeenClient) {}

  /** Creates a tenant (platform admins); a name in use is a `ConflictError` (409 `ALREADY_EXISTS`). */
  async create(request: TenantCreateRequest): Promise<Tenant> {
    return (await this.client.request<TenantResponse>('POST', '/v1/admin/tenants', { body: request })).tenant;
  }

  /** One page of tenants, by id; pass `next_cursor` as `cursor` for the next. */
  list(params: { limit?: number; cursor?: string } = {}): Promise<TenantListResponse> {
    return this.client.request<TenantListResponse>('GET', '/v1/admin/tenants', { query: { ...params } });
  }

  /** Every tenant in reach: `for await (const t of client.tenants.all())`. */
  all(params: { limit?: number } = {}): AsyncGenerator<Tenant, void, undefined> {
    return paginate(async (cursor) => {
      const r = await this.list({ ...params, ...(cursor ? { cursor } : {}) });
      return { items: r.tenants, next: r.next_cursor };
    });
  }

  /** A tenant's credit pool and one page of its ledger, newest first. */
  credits(tenantId: string, params: { limit?: number; cursor?: string } = {}): Promise<TenantCreditPoolResponse> {
    return this.client.request<TenantCreditPoolResponse>(
      'GET',
      `/v1/admin/tenants/${encodeURIComponent(tenantId)}/credits`,
      { query: { ...params } },
    );
  }

  /**
   * Adds credits to a tenant's pool (platform admins). The request carries an
   * idempotency key (a new one per call unless given, reused by the client's own
   * retries): the same key and body within 24 h answer the first grant.
   */
  grantCredits(
    tenantId: string,
    request: TenantCreditGrantRequest,
    options: { idempotencyKey?: string; signal?: AbortSignal } = {},
  ): Promise<TenantCreditGrantResponse> {
    return this.client.request<TenantCreditGrantResponse>(
      'POST',
      `/v1/admin/tenants/${encodeURIComponent(tenantId)}/credits/grant`,
      { body: request, ...options },
    );
  }

  /**
   * One page of credit pools, by tenant id (a tenant admin gets its own). Tenants whose pool never held credits
   * are absent.
   */
  pools(params: { limit?: number; cursor?: string } = {}): Promise<CreditPoolListResponse> {
    return this.client.request<CreditPoolListResponse>('GET', '/v1/admin/credits/pools', { query: { ...params } });
  }

  /** Every credit pool in reach. */
  allPools(params: { limit?: number } = {}): AsyncGenerator<CreditPool, void, undefined> {
    return paginate(async (cursor) => {
      const r = await this.pools({ ...params, ...(cursor ? { cursor } : {}) });
      return { items: r.pools, next: r.next_cursor };
    });
  }
}
