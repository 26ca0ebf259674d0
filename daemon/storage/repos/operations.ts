import type { Database, Queryable } from '../database.js';

/**
 * Counts over the credit tables for operators: the expired-reservations gauge
 * (daemon/monitoring/reservations.ts) and the restore check
 * (daemon/backup/restore.ts). Read-only; the ledger's own reads and writes are
 * in the credits repositories.
 */
export class OperationsReads {
  private readonly db: Queryable;

  constructor(database: Pick<Database, 'db'>) {
    this.db = database.db;
  }

  /** Open reservations whose lease ended at or before `before`. */
  async countExpiredOpenReservations(before: number): Promise<number> {
    const row = await this.db
      .selectFrom('credit_reservations')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('status', '=', 'open')
      .where('expires_at', '<=', before)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async countCreditAccounts(): Promise<number> {
    const accounts = await this.db
      .selectFrom('credit_accounts')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(accounts.n);
  }
}
