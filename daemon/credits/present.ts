import type { CreditBalance, CreditPool, CreditPoolEntry, CreditTransaction } from '../../schemas/types.gen.js';
import { iso } from '../clock.js';
import type { Balance, LedgerEntry } from './ledger.js';
import { formatCredits } from './money.js';
import type { PoolBalance, PoolEntry } from './pools.js';

/** The credit endpoints' JSON (types generated from schemas/api/): micros become decimal credits, times ISO 8601. */

export function presentBalance(b: Balance): CreditBalance {
  return {
    balance: formatCredits(b.balance),
    reserved: formatCredits(b.reserved),
    available: formatCredits(b.available),
  };
}

/** A ledger entry as the user sees it (no actor ids, no idempotency key). */
export function presentEntry(e: LedgerEntry): CreditTransaction {
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

/** A tenant's credit pool (schemas/api/CreditPool.json). */
export function presentPool(p: PoolBalance): CreditPool {
  return {
    tenant_id: p.tenantId,
    balance: formatCredits(p.balance),
    updated_at: p.updatedAt === null ? null : iso(p.updatedAt),
  };
}

/** An entry of a pool's ledger (schemas/api/CreditPoolEntry.json); no actor ids, no idempotency key. */
export function presentPoolEntry(e: PoolEntry): CreditPoolEntry {
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
