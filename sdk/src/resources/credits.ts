import type { KeenClient } from '../client.js';
import { paginate } from '../internal/paginate.js';
import type {
  CreditAdjustRequest,
  CreditAdjustResponse,
  CreditBalanceResponse,
  CreditGrantRequest,
  CreditGrantResponse,
  CreditTransaction,
  CreditTransactionListResponse,
  CreditVerifyResponse,
} from '../types.js';

/** Parameters of `credits.adminTransactions()`. */
export interface AdminTransactionsParams {
  /** The user: an id or an email. */
  user_id: string;
  /** 1 to 100 (default 50). */
  limit?: number;
  /** `next_cursor` of the previous page. */
  cursor?: string;
}

/**
 * Your credits: balance and ledger. For administrators (scope `admin`): grants,
 * any user's balance and ledger in reach, and (platform admins) adjustments and
 * the ledger check. Amounts are decimal credits.
 */
export class Credits {
  constructor(private readonly client: KeenClient) {}

  /** `{balance, reserved, available}`: `available` is what a new run may reserve. */
  balance(): Promise<CreditBalanceResponse> {
    return this.client.request<CreditBalanceResponse>('GET', '/v1/credits/balance');
  }

  /** One page of your ledger, newest first; pass `next_cursor` as `cursor` for the next. */
  transactions(params: { limit?: number; cursor?: string } = {}): Promise<CreditTransactionListResponse> {
    return this.client.request<CreditTransactionListResponse>('GET', '/v1/credits/transactions', {
      query: { ...params },
    });
  }

  /** Every ledger entry, newest first: `for await (const t of client.credits.allTransactions())`. */
  allTransactions(params: { limit?: number } = {}): AsyncGenerator<CreditTransaction, void, undefined> {
    return paginate(async (cursor) => {
      const r = await this.transactions({ ...params, ...(cursor ? { cursor } : {}) });
      return { items: r.transactions, next: r.next_cursor };
    });
  }

  /**
   * Corrects a user's balance by a signed amount (`POST /v1/admin/credits/adjust`;
   * platform admins): negative removes credits, never below what is reserved
   * (402). The request carries an idempotency key (a new one per call unless
   * given, reused by the client's own retries): the same key and body within
   * 24 h answer the first adjustment.
   */
  adjust(
    request: CreditAdjustRequest,
    options: { idempotencyKey?: string; signal?: AbortSignal } = {},
  ): Promise<CreditAdjustResponse> {
    return this.client.request<CreditAdjustResponse>('POST', '/v1/admin/credits/adjust', { body: request, ...options });
  }

  /**
   * Grants credits to a user, by id or email (`POST /v1/admin/credits/grant`;
   * administrators). A platform admin adds them; a tenant admin draws them from
   * its tenant's credit pool (the answer then carries `pool`; a pool holding too
   * little is an `InsufficientCreditsError`; a grant to itself, an
   * `AuthorizationError`). The request carries an idempotency key (a new one per
   * call unless given, reused by the client's own retries): the same key and
   * body within 24 h answer the first grant.
   */
  grant(
    request: CreditGrantRequest,
    options: { idempotencyKey?: string; signal?: AbortSignal } = {},
  ): Promise<CreditGrantResponse> {
    return this.client.request<CreditGrantResponse>('POST', '/v1/admin/credits/grant', { body: request, ...options });
  }

  /** Administrators: a user's `{user_id, balance, reserved, available}` (`user`: id or email). */
  adminBalance(user: string, options: { signal?: AbortSignal } = {}): Promise<CreditBalanceResponse> {
    return this.client.request<CreditBalanceResponse>('GET', '/v1/admin/credits/balance', {
      query: { user_id: user },
      ...options,
    });
  }

  /** Administrators: one page of a user's ledger, newest first; pass `next_cursor` as `cursor` for the next. */
  adminTransactions(params: AdminTransactionsParams): Promise<CreditTransactionListResponse> {
    return this.client.request<CreditTransactionListResponse>('GET', '/v1/admin/credits/transactions', {
      query: { ...params },
    });
  }

  /** Administrators: every entry of a user's ledger, newest first, page after page. */
  allAdminTransactions(
    params: Omit<AdminTransactionsParams, 'cursor'>,
  ): AsyncGenerator<CreditTransaction, void, undefined> {
    return paginate(async (cursor) => {
      const r = await this.adminTransactions({ ...params, ...(cursor ? { cursor } : {}) });
      return { items: r.transactions, next: r.next_cursor };
    });
  }

  /**
   * Recomputes every account and tenant credit pool from its ledger
   * (`POST /v1/admin/credits/verify`; platform admins): `ok`, and each mismatch.
   * A mismatch is an answer, not an error: check `ok`.
   */
  verify(options: { signal?: AbortSignal } = {}): Promise<CreditVerifyResponse> {
    return this.client.request<CreditVerifyResponse>('POST', '/v1/admin/credits/verify', { body: {}, ...options });
  }
}
