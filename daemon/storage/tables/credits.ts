/** Credit ledger tables (migration 0003_credits). */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface CreditTables {}
