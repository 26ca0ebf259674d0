import type { KeenClient } from '../client.js';
import { paginate } from '../internal/paginate.js';
import type { Budget, BudgetListResponse, BudgetRequest, BudgetResponse } from '../types.js';

/** Whose budget: an API key's, a user's (id or email) or a tenant's (id or name). */
export type BudgetSubject = 'api_key' | 'user' | 'tenant';

const ADMIN_PATH: Record<BudgetSubject, string> = { api_key: 'api-keys', user: 'users', tenant: 'tenants' };

/**
 * Budgets: at most `amount` credits admitted per `period` (`day`, `week`,
 * `month` or `total`) for an API key, a user or a tenant. An execute that would
 * exceed one is refused with 402 `BUDGET_EXCEEDED`: an `InsufficientCreditsError`
 * whose `budget` names it and says when it resets.
 */
export class Budgets {
  constructor(private readonly client: KeenClient) {}

  /** The budgets that apply to you (your user's, your tenant's, your keys'), with this period's use. */
  mine(): Promise<BudgetListResponse> {
    return this.client.request<BudgetListResponse>('GET', '/v1/budgets');
  }

  /** Caps one of your own API keys (a signed-in session only; an API key cannot cap keys). */
  setForOwnKey(keyId: string, budget: BudgetRequest): Promise<BudgetResponse> {
    return this.client.request<BudgetResponse>('PUT', `/v1/api-keys/${encodeURIComponent(keyId)}/budget`, {
      body: budget,
    });
  }

  /** Removes your own key's budget (unless an administrator set it). */
  removeFromOwnKey(keyId: string): Promise<{ success: true }> {
    return this.client.request<{ success: true }>('DELETE', `/v1/api-keys/${encodeURIComponent(keyId)}/budget`);
  }

  /** Administrators: sets the budget of a key, user or (platform admins) tenant in reach. */
  set(subject: BudgetSubject, id: string, budget: BudgetRequest): Promise<BudgetResponse> {
    return this.client.request<BudgetResponse>(
      'PUT',
      `/v1/admin/${ADMIN_PATH[subject]}/${encodeURIComponent(id)}/budget`,
      { body: budget },
    );
  }

  /** Administrators: removes a budget (only the role that set it, or a higher one, may). */
  remove(subject: BudgetSubject, id: string): Promise<{ success: true }> {
    return this.client.request<{ success: true }>(
      'DELETE',
      `/v1/admin/${ADMIN_PATH[subject]}/${encodeURIComponent(id)}/budget`,
    );
  }

  /** Administrators: one page of the budgets in reach, by subject and id. */
  list(params: { limit?: number; cursor?: string; subject?: BudgetSubject } = {}): Promise<BudgetListResponse> {
    return this.client.request<BudgetListResponse>('GET', '/v1/admin/budgets', { query: { ...params } });
  }

  /** Administrators: every budget in reach. */
  all(params: { limit?: number; subject?: BudgetSubject } = {}): AsyncGenerator<Budget, void, undefined> {
    return paginate(async (cursor) => {
      const r = await this.list({ ...params, ...(cursor ? { cursor } : {}) });
      return { items: r.budgets, next: r.next_cursor };
    });
  }
}
