import type { Database } from '../database.js';
import { BudgetRepository } from './budgets.js';
import { LedgerRepository } from './ledger.js';
import { LedgerVerifyRepository } from './ledger-verify.js';
import { PoolRepository } from './pools.js';

/**
 * The credit ledger's repositories: accounts, entries and reservations; tenant pools; budgets and
 * their windows; the verification reads.
 */
export interface CreditRepositories {
  ledger: LedgerRepository;
  pools: PoolRepository;
  budgets: BudgetRepository;
  /** The reads of `credits verify` (pages of account sums, then the per-account and per-pool checks). */
  verify: LedgerVerifyRepository;
}

/** Builds the credit repositories over one database (the composition root does, once). */
export function creditRepositories(database: Database): CreditRepositories {
  return {
    ledger: new LedgerRepository(database),
    pools: new PoolRepository(database),
    budgets: new BudgetRepository(database),
    verify: new LedgerVerifyRepository(database.db),
  };
}
