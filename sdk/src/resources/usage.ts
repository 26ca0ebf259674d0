import type { KeenClient } from '../client.js';
import type { UsageAdminQuery, UsageQuery, UsageReportResponse } from '../types.js';

/** Parameters of `client.usage.get()`: the JSON report (CSV is for `curl` and `keen-admin usage --csv`). */
export type UsageParams = Omit<UsageQuery, 'format'>;
/** Parameters of `client.usage.admin()`. */
export type AdminUsageParams = Omit<UsageAdminQuery, 'format'>;

/**
 * Usage reports over a time range (default: the last 30 days; at most 366):
 * credits charged, refunded, adjusted and granted, net spend, sessions, tokens
 * and web searches, per day (in the report's time zone) or per API key, user or
 * tenant, with `totals` over all rows. Amounts are decimal credits.
 *
 * `since` and `until` take an ISO 8601 date or date-time, or an age (`30d`, `24h`).
 */
export class Usage {
  constructor(private readonly client: KeenClient) {}

  /** Your own usage (scope `credits:read`), by `day` (default) or `key`. */
  get(params: UsageParams = {}): Promise<UsageReportResponse> {
    return this.client.request<UsageReportResponse>('GET', '/v1/usage', { query: { ...params, format: 'json' } });
  }

  /**
   * Usage of the users in reach (scope `admin`: platform admins everything,
   * tenant admins their tenant), by `day`, `key`, `user` or `tenant`, filtered by
   * `user_id` (id or email), `api_key_id` or `tenant_id`.
   */
  admin(params: AdminUsageParams = {}): Promise<UsageReportResponse> {
    return this.client.request<UsageReportResponse>('GET', '/v1/admin/usage', { query: { ...params, format: 'json' } });
  }
}
