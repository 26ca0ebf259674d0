/**
 * Tenant credit pools (docs/credits.md, "Tenant credit pools"): the storage
 * side. A pool is an account of a tenant (`credit_pools`) with its own
 * append-only ledger (`credit_pool_ledger`), kept with the same invariants as a
 * user's account: balance = sum of entries, each `balance_after` follows from
 * the one before in `seq` order, version = last seq, never negative. The money
 * operations that use these helpers are `CreditLedger.grantPool()` and
 * `CreditLedger.transferFromPool()`; `CreditLedger.verify()` checks every pool
 * with `verifyPool()` and `verifyPoolReferences()`.
 */
import type { AuditActorType } from '../audit/types.js';
import { GatewayError, notFound } from '../errors.js';
import { newId } from '../ids.js';
import type { Queryable } from '../storage/database.js';
import type { LedgerVerifyRepository } from '../storage/repos/ledger-verify.js';
import type { PoolEntryRow, PoolRepository, PoolRow } from '../storage/repos/pools.js';
import type { PoolEntryKind } from '../storage/tables/credits.js';
import type { Balance, CreditActor, LedgerEntry, Mismatch, MismatchCheck } from './ledger.js';
import { ZERO, addMicros, formatCredits, subMicros, toMicros, type Micros } from './money.js';

export type { PoolEntryRow, PoolRow };

/** A tenant's pool: what its admins may still hand out. */
export interface PoolBalance {
  tenantId: string;
  balance: Micros;
  /** When the pool last moved; null for a pool that never held credits. */
  updatedAt: number | null;
}

/** One entry of a pool's ledger. */
export interface PoolEntry {
  id: string;
  tenantId: string;
  seq: number;
  kind: PoolEntryKind;
  /** Signed: `grant` +, `transfer` -. */
  amount: Micros;
  balanceAfter: Micros;
  reason: string | null;
  actor: CreditActor;
  /** The member a `transfer` went to. */
  userId: string | null;
  /** The member's `grant` entry (credit_ledger) a `transfer` wrote. */
  transferEntryId: string | null;
  idempotencyKey: string | null;
  createdAt: number;
}

export interface PoolGrantInput {
  tenantId: string;
  amount: Micros;
  reason: string;
  actor: CreditActor;
  /** A pool grant with a key happens once per (tenant, key); a retry answers the first grant. */
  idempotencyKey?: string | null;
}

export interface PoolGrantResult {
  entry: PoolEntry;
  pool: PoolBalance;
  /** True when the key had already been used for this same grant: nothing moved this time. */
  replayed: boolean;
}

export interface PoolTransferInput {
  tenantId: string;
  /** The member who receives the credits; must belong to `tenantId`. */
  userId: string;
  amount: Micros;
  reason: string;
  actor: CreditActor;
  /** Recorded on the member's `grant` entry: a transfer with a key happens once per (member, key). */
  idempotencyKey?: string | null;
}

export interface PoolTransferResult {
  /** The member's `grant` entry. */
  entry: LedgerEntry;
  /** The pool's `transfer` entry. */
  poolEntry: PoolEntry;
  /** The member's balance after the transfer. */
  balance: Balance;
  pool: PoolBalance;
  replayed: boolean;
}

export interface PoolEntriesPage {
  entries: PoolEntry[];
  /** Opaque; pass back as `cursor` for the next (older) page. Null on the last page. */
  nextCursor: string | null;
}

export interface PoolChange {
  id?: string;
  kind: PoolEntryKind;
  amount: Micros;
  reason: string;
  actor: CreditActor;
  userId?: string | null;
  transferEntryId?: string | null;
  idempotencyKey?: string | null;
}

/**
 * Locks the tenant's pool row for the rest of the transaction (FOR NO KEY UPDATE
 * on Postgres, like an account: writers of the pool serialize, the foreign-key
 * checks of its new entries pass). With `create`, a missing pool is created
 * first (race-safe: INSERT ... ON CONFLICT DO NOTHING, then the locking read);
 * an unknown tenant is NOT_FOUND.
 */
export async function lockPool(
  pools: PoolRepository,
  t: Queryable,
  tenantId: string,
  create: true,
  now: number,
): Promise<PoolRow>;
export async function lockPool(
  pools: PoolRepository,
  t: Queryable,
  tenantId: string,
  create: false,
  now: number,
): Promise<PoolRow | undefined>;
export async function lockPool(
  pools: PoolRepository,
  t: Queryable,
  tenantId: string,
  create: boolean,
  now: number,
): Promise<PoolRow | undefined> {
  const found = await pools.lockPool(t, tenantId);
  if (found || !create) return found;
  const tenant = await pools.poolTenant(t, tenantId);
  if (!tenant) throw notFound('tenant');
  await pools.createPool(t, tenant.id, now);
  const created = await pools.lockPool(t, tenantId);
  if (!created) throw new Error(`credit pool of ${tenantId} vanished after insert`);
  return created;
}

/**
 * Appends one entry to the locked pool (the next seq, balance_after following
 * from the pool's balance), applies it to the in-memory row and writes the row
 * back with a version check, so a missed lock fails loudly.
 */
export async function appendPoolEntry(
  pools: PoolRepository,
  t: Queryable,
  pool: PoolRow,
  change: PoolChange,
  now: number,
): Promise<PoolEntry> {
  const row: PoolEntryRow = {
    id: change.id ?? newId('txn', now),
    tenant_id: pool.tenant_id,
    seq: pool.version + 1,
    kind: change.kind,
    amount: change.amount,
    balance_after: addMicros(toMicros(pool.balance), change.amount),
    reason: change.reason,
    actor_type: change.actor.type,
    actor_id: change.actor.id,
    user_id: change.userId ?? null,
    transfer_entry_id: change.transferEntryId ?? null,
    idempotency_key: change.idempotencyKey ?? null,
    created_at: now,
  };
  if (row.balance_after < 0) throw new Error(`pool entry would leave the credit pool of ${pool.tenant_id} negative`);
  await pools.insertEntry(t, row);
  pool.balance = row.balance_after;
  pool.version = row.seq;
  pool.updated_at = now;
  if ((await pools.savePool(t, pool, now)) !== 1) {
    throw new Error(`credit pool of ${pool.tenant_id} changed under its lock`);
  }
  return toPoolEntry(row);
}

/** 402 INSUFFICIENT_CREDITS naming the pool, with the same details as a user's (plus `pool`: the tenant id). */
export function poolInsufficient(tenantId: string, required: Micros, available: Micros): GatewayError {
  return new GatewayError('INSUFFICIENT_CREDITS', `not enough credits in the credit pool of tenant ${tenantId}`, {
    details: {
      pool: tenantId,
      required: formatCredits(required),
      available: formatCredits(available),
      shortfall: formatCredits(subMicros(required, available)),
    },
  });
}

/**
 * Recomputes one pool, read under its lock: balance vs the sum of its entries,
 * never negative, the balance_after chain in seq order, version vs the last
 * seq, and every `transfer` paired with the member's `grant` entry it wrote
 * (same amount, pointing back at it, a user of the tenant). Mismatches carry
 * `account: 'pool'`, the tenant id in `tenantId` and (as the account key) in `userId`.
 */
export async function verifyPool(checks: LedgerVerifyRepository, t: Queryable, pool: PoolRow): Promise<Mismatch[]> {
  const out: Mismatch[] = [];
  const tenantId = pool.tenant_id;
  const add = (check: MismatchCheck, expected: number, actual: number, message: string, entryId?: string): void => {
    out.push({
      userId: tenantId,
      account: 'pool',
      tenantId,
      check,
      expected,
      actual,
      message,
      ...(entryId ? { entryId } : {}),
    });
  };

  const ledgerSum = await checks.poolEntrySum(t, tenantId);
  if (ledgerSum !== pool.balance)
    add('balance', ledgerSum, pool.balance, 'pool balance differs from the sum of its entries');
  if (pool.balance < 0) add('available', 0, pool.balance, 'pool balance is negative');

  let prevBalance = 0;
  let expectedSeq = 1;
  let lastSeq = 0;
  for (;;) {
    const rows = await checks.poolEntriesFrom(t, tenantId, expectedSeq, 1000);
    for (const e of rows) {
      if (e.seq !== expectedSeq) add('chain', expectedSeq, e.seq, 'pool ledger sequence has a gap', e.id);
      if (e.balance_after !== prevBalance + e.amount) {
        add(
          'chain',
          prevBalance + e.amount,
          e.balance_after,
          'balance_after does not follow from the previous pool entry',
          e.id,
        );
      }
      if (e.balance_after < 0) add('available', 0, e.balance_after, 'pool entry left the pool negative', e.id);
      prevBalance = e.balance_after;
      expectedSeq = e.seq + 1;
      lastSeq = e.seq;
    }
    if (rows.length < 1000) break;
  }
  if (prevBalance !== pool.balance)
    add('chain', prevBalance, pool.balance, 'pool balance differs from the last balance_after');
  if (lastSeq !== pool.version) add('version', lastSeq, pool.version, 'pool version differs from its last ledger seq');

  // Each transfer and the member's grant entry it wrote: only the broken pairs come back.
  const broken = await checks.brokenTransfers(t, tenantId);
  for (const b of broken) {
    const message =
      b.memberEntryId === null
        ? 'pool transfer has no matching grant entry of the member'
        : 'pool transfer and the grant entry of the member disagree';
    add('transfer', -b.amount, b.memberAmount === null ? 0 : Number(b.memberAmount), message, b.id);
  }
  return out;
}

/**
 * The other half of the pairing: member `grant` entries that name a pool entry
 * which does not exist or does not name them back. Reported on the member's
 * account (check `transfer`).
 */
export async function verifyPoolReferences(checks: LedgerVerifyRepository): Promise<Mismatch[]> {
  const rows = await checks.danglingPoolReferences();
  return rows.map((r) => ({
    userId: r.userId,
    check: 'transfer' as const,
    expected: 0,
    actual: Number(r.amount),
    entryId: r.id,
    message:
      r.poolEntryId === null
        ? 'grant names a pool entry that does not exist'
        : 'grant names a pool entry that does not name it back',
  }));
}

export function toPoolEntry(r: PoolEntryRow): PoolEntry {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    seq: r.seq,
    kind: r.kind,
    amount: toMicros(r.amount),
    balanceAfter: toMicros(r.balance_after),
    reason: r.reason,
    actor: { type: r.actor_type as AuditActorType, id: r.actor_id },
    userId: r.user_id,
    transferEntryId: r.transfer_entry_id,
    idempotencyKey: r.idempotency_key,
    createdAt: r.created_at,
  };
}

export function toPoolBalance(tenantId: string, row: Pick<PoolRow, 'balance' | 'updated_at'> | undefined): PoolBalance {
  return row
    ? { tenantId, balance: toMicros(row.balance), updatedAt: row.updated_at }
    : { tenantId, balance: ZERO, updatedAt: null };
}
