import type { KeenClient } from '../client.js';
import { paginate } from '../internal/paginate.js';
import type { CreditBalanceResponse, CreditTransaction, CreditTransactionListResponse } from '../types.js';

/** Your credits: balance and ledger. Amounts are decimal credits. */
export class Credits {
  constructor(private readonly client: KeenClient) {}

  /** `{balance, reserved, available}`: `available` is what a new run may reserve. */
  balance(): Promise<CreditBalanceResponse> {
    return this.client.request<CreditBalanceResponse>('GET', '/v1/credits/balance');
  }

  /** One page of your ledger, newest first; pass `next_cursor` as `cursor` for the next. */
  transactions(params: { limit?: number; cursor?: string } = {}): Promise<CreditTransactionListResponse> {
    return this.client.request<CreditTransactionListResponse>('GET', '/v1/credits/transactions', { query: { ...params } });
  }

  /** Every ledger entry, newest first: `for await (const t of client.credits.allTransactions())`. */
  allTransactions(params: { limit?: number } = {}): AsyncGenerator<CreditTransaction, void, undefined> {
    return paginate(async (cursor) => {
      const r = await this.transactions({ ...params, ...(cursor ? { cursor } : {}) });
      return { items: r.transactions, next: r.next_cursor };
    });
  }
}
