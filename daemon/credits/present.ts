import { iso } from '../clock.js';
import type { Balance, LedgerEntry } from './ledger.js';
import { formatCredits } from './money.js';
import type { PoolBalance, PoolEntry } from './pools.js';

/** JSON shapes of the credit endpoints: micros become decimal credits, times ISO 8601. */

export interface BalanceJson {
  balance: number;
  reserved: number;
  available: number;
}

export function presentBalance(b: Balance): BalanceJson {
  return { balance: formatCredits(b.balance), reserved: formatCredits(b.reserved), available: formatCredits(b.available) };
}

export interface TransactionJson {
  id: string;
  kind: LedgerEntry['kind'];
  amount: number;
  reserved_delta: number;
  balance_after: number;
  reserved_after: number;
  reason: string | null;
  reservation_id: string | null;
  session_id: string | null;
  created_at: string;
}

/** A ledger entry as the user sees it (no actor ids, no idempotency key). */
export function presentEntry(e: LedgerEntry): TransactionJson {
  return {
    id: e.id,
    kind: e.kind,
    amount: formatCredits(e.amount),
    reserved_delta: formatCredits(e.reservedDelta),
    balance_after: formatCredits(e.balanceAfter),
    reserved_after: formatCredits(e.reservedAfter),
    reason: e.reason,
    reservation_id: e.reservationId,
    session_id: e.sessionId,
    created_at: iso(e.createdAt),
  };
}

export interface PoolJson {
  tenant_id: string;
  balance: number;
  updated_at: string | null;
}

/** A tenant's credit pool (schemas/api/CreditPool.json). */
export function presentPool(p: PoolBalance): PoolJson {
  return { tenant_id: p.tenantId, balance: formatCredits(p.balance), updated_at: p.updatedAt === null ? null : iso(p.updatedAt) };
}

export interface PoolEntryJson {
  id: string;
  kind: PoolEntry['kind'];
  amount: number;
  balance_after: number;
  reason: string | null;
  user_id: string | null;
  transaction_id: string | null;
  created_at: string;
}

/** An entry of a pool's ledger (schemas/api/CreditPoolEntry.json); no actor ids, no idempotency key. */
export function presentPoolEntry(e: PoolEntry): PoolEntryJson {
  return {
    id: e.id,
    kind: e.kind,
    amount: formatCredits(e.amount),
    balance_after: formatCredits(e.balanceAfter),
    reason: e.reason,
    user_id: e.userId,
    transaction_id: e.transferEntryId,
    created_at: iso(e.createdAt),
  };
}
