/**
 * Credit ledger tables (migration 0003_credits). Money columns are integer
 * micro-credits, times epoch milliseconds, all stored as bigint.
 */
export type LedgerKind = 'grant' | 'reserve' | 'charge' | 'release' | 'refund' | 'adjustment';
export type BudgetSubject = 'api_key' | 'user' | 'tenant';
export type BudgetPeriod = 'day' | 'week' | 'month' | 'total';
export type ReservationStatus = 'open' | 'settled' | 'released' | 'expired';
/** Entries of a tenant's credit pool: `grant` adds (platform admins), `transfer` moves credits to a member. */
export type PoolEntryKind = 'grant' | 'transfer';

export interface CreditTables {
  /** One row per user who ever held credits; the row every money transaction locks. */
  credit_accounts: {
    user_id: string;
    tenant_id: string | null;
    /** Sum of every ledger entry's `amount`. */
    balance: number;
    /** Sum of the `amount` of the user's open reservations. */
    reserved: number;
    updated_at: number;
    /** The `seq` of the account's last ledger entry (0 before the first). */
    version: number;
  };
  /** Append-only: an entry is never updated or deleted; corrections are new entries. */
  credit_ledger: {
    id: string;
    user_id: string;
    tenant_id: string | null;
    /** 1, 2, 3... per account, in commit order: the order of the balance_after chain. */
    seq: number;
    kind: LedgerKind;
    /** Signed effect on the balance (grant +, charge -, reserve/release 0). */
    amount: number;
    /** Signed effect on `reserved` (reserve +, charge and release -). */
    reserved_delta: number;
    balance_after: number;
    reserved_after: number;
    reason: string | null;
    actor_type: string;
    actor_id: string | null;
    reservation_id: string | null;
    session_id: string | null;
    /** Set on grants made with an idempotency key; unique per user. */
    idempotency_key: string | null;
    created_at: number;
    /** On a `grant` drawn from the tenant's pool: the pool's `transfer` entry (migration 0010). */
    pool_entry_id: string | null;
    /** The API key that spent (reserve, charge, release, refund of a key's run); null otherwise (0011). */
    api_key_id: string | null;
  };
  /** One row per tenant whose pool ever held credits (migration 0010_tenant_credit_pools); locked like an account. */
  credit_pools: {
    tenant_id: string;
    /** Sum of every pool entry's `amount`; never negative (a CHECK constraint too). */
    balance: number;
    updated_at: number;
    /** The `seq` of the pool's last entry (0 before the first). */
    version: number;
  };
  /** The pool's own append-only ledger: `grant` (+, from the platform) and `transfer` (-, to a member). */
  credit_pool_ledger: {
    id: string;
    tenant_id: string;
    /** 1, 2, 3... per pool, in commit order. */
    seq: number;
    kind: PoolEntryKind;
    amount: number;
    balance_after: number;
    reason: string | null;
    actor_type: string;
    actor_id: string | null;
    /** The member a `transfer` went to. */
    user_id: string | null;
    /** The member's `grant` entry in credit_ledger that a `transfer` wrote. */
    transfer_entry_id: string | null;
    /** Set on pool grants made with an idempotency key; unique per pool. */
    idempotency_key: string | null;
    created_at: number;
  };
  /** Holds on credits, as leases: open until settled, released, or expired by the reaper. */
  credit_reservations: {
    id: string;
    user_id: string;
    tenant_id: string | null;
    amount: number;
    status: ReservationStatus;
    /** What settlement charged (0 while open). */
    charged: number;
    session_id: string | null;
    expires_at: number;
    created_at: number;
    settled_at: number | null;
    /** The daemon instance that holds the lease and extends it. */
    owner: string;
    /** The API key the hold was made with; null when the caller signed in (0011). */
    api_key_id: string | null;
    /** JSON array of the budget windows this hold counted against (`BudgetWindowRef[]`); null when none (0011). */
    budget_windows: string | null;
  };
  /** Stored responses of requests made with an `Idempotency-Key`, per user. */
  idempotency_keys: {
    user_id: string;
    key: string;
    request_hash: string;
    status: 'in_flight' | 'done';
    response_status: number | null;
    /** JSON text of the response body. */
    response_body: string | null;
    created_at: number;
    expires_at: number;
  };
  /** At most one budget per API key, user or tenant (migration 0011_spend_control). */
  budgets: {
    subject_type: BudgetSubject;
    subject_id: string;
    /** The subject's tenant (for a tenant: itself), for tenant admins' reach. */
    tenant_id: string | null;
    /** Micro-credits a period may admit. */
    amount: number;
    period: BudgetPeriod;
    /** Who set it: only that role or a higher one may change or remove it. */
    set_by: 'owner' | 'tenant_admin' | 'platform_admin';
    created_at: number;
    updated_at: number;
  };
  /** What one budget admitted in one period: open holds plus what settled holds charged. */
  budget_windows: {
    subject_type: BudgetSubject;
    subject_id: string;
    /** Start of the period (ms); 0 for a `total` budget. */
    window_start: number;
    used: number;
    /** The highest threshold (percent) already announced in this window; 0 before the first. */
    notified_pct: number;
    updated_at: number;
  };
}
