import { randomBytes } from 'node:crypto';
import type { AuditActorType, AuditLogger } from '../audit/types.js';
import type { Clock } from '../clock.js';
import { GatewayError, invalidField, notFound } from '../errors.js';
import { isId, newId } from '../ids.js';
import type { Metrics } from '../metrics.js';
import { EVERYTHING, reachFilter, type Reach } from '../policies/index.js';
import type { Database, Queryable } from '../storage/database.js';
import type { CreditRepositories } from '../storage/repos/credits.js';
import type { AccountRow, EntryRow, ReservationRow } from '../storage/repos/ledger.js';
import type { LedgerKind, ReservationStatus } from '../storage/tables/credits.js';
import { assertIdempotencyKey } from '../idempotency/key.js';
import { giveBackToBudgets, type BudgetBook } from './budgets.js';
import { CreditMetrics } from './metrics.js';
import {
  appendPoolEntry,
  lockPool,
  poolInsufficient,
  toPoolBalance,
  toPoolEntry,
  verifyPool,
  verifyPoolReferences,
  type PoolBalance,
  type PoolEntriesPage,
  type PoolGrantInput,
  type PoolGrantResult,
  type PoolTransferInput,
  type PoolTransferResult,
} from './pools.js';
import {
  MAX_MICROS,
  ZERO,
  addMicros,
  formatCredits,
  minMicros,
  negMicros,
  subMicros,
  toMicros,
  type Micros,
} from './money.js';

/** One ledger entry to append: its signed effects on the balance and on the reserved total, and why. */
interface EntryChange {
  kind: LedgerKind;
  amount: Micros;
  reservedDelta: Micros;
  reason: string | null;
  actor: CreditActor;
  reservationId?: string | null;
  sessionId?: string | null;
  idempotencyKey?: string | null;
  /** The entry's id, when the caller needs it first (a pool transfer names it on the pool's entry). */
  id?: string;
  /** A `grant` drawn from the tenant's pool: the pool's `transfer` entry. */
  poolEntryId?: string | null;
  /** The API key that spent (a key's reserve, charge, release or refund). */
  apiKeyId?: string | null;
}

/** Who moved the money; recorded on the ledger entry and in the audit log. */
export interface CreditActor {
  type: AuditActorType;
  id: string | null;
}

export const SYSTEM_ACTOR: CreditActor = { type: 'system', id: null };

export interface Balance {
  balance: Micros;
  reserved: Micros;
  /** balance - reserved; never negative. */
  available: Micros;
}

export interface LedgerEntry {
  id: string;
  userId: string;
  tenantId: string | null;
  seq: number;
  kind: LedgerKind;
  /** Signed effect on the balance. */
  amount: Micros;
  /** Signed effect on the reserved total. */
  reservedDelta: Micros;
  balanceAfter: Micros;
  reservedAfter: Micros;
  reason: string | null;
  actor: CreditActor;
  reservationId: string | null;
  sessionId: string | null;
  idempotencyKey: string | null;
  createdAt: number;
  /** On a `grant` drawn from the tenant's credit pool: the pool's `transfer` entry. */
  poolEntryId: string | null;
}

export interface Reservation {
  id: string;
  userId: string;
  tenantId: string | null;
  amount: Micros;
  status: ReservationStatus;
  charged: Micros;
  sessionId: string | null;
  expiresAt: number;
  createdAt: number;
  settledAt: number | null;
  owner: string;
  apiKeyId: string | null;
}

export interface GrantInput {
  userId: string;
  amount: Micros;
  reason: string;
  actor: CreditActor;
  /** A grant with a key happens once per (user, key); a retry answers the first grant. */
  idempotencyKey?: string | null;
}

export interface GrantResult {
  entry: LedgerEntry;
  balance: Balance;
  /** True when the key had already been used for this same grant: nothing moved this time. */
  replayed: boolean;
}

export interface AdjustInput {
  userId: string;
  /** Signed: a correction may add or remove credits, never below what is reserved. */
  amount: Micros;
  reason: string;
  actor: CreditActor;
  /** Like a grant's: an adjustment with a key happens once per (user, key); a retry answers the first. */
  idempotencyKey?: string | null;
}

export interface AdjustResult {
  entry: LedgerEntry;
  balance: Balance;
  /** True when the key had already been used for this same adjustment: nothing moved this time. */
  replayed: boolean;
}

export interface RefundInput {
  sessionId: string;
  /** Credits to give back; default (undefined or null): everything still refundable. */
  amount?: Micros | null;
  reason: string;
  actor: CreditActor;
  /** A refund with a key happens once per (session's user, key); a retry answers the first. */
  idempotencyKey?: string | null;
}

export interface RefundResult {
  entry: LedgerEntry;
  balance: Balance;
  /** What the session was charged, over its reservations. */
  charged: Micros;
  /** What its refunds gave back in total, this one included. */
  refunded: Micros;
  /** What is still refundable: charged - refunded. */
  refundable: Micros;
  replayed: boolean;
}

export interface ReserveInput {
  userId: string;
  amount: Micros;
  /** Lease length; the holder extends it with `extend()` while it works. */
  ttlMs: number;
  sessionId?: string | null;
  actor: CreditActor;
  /** The API key spending, when the caller used one: its budget applies, and usage by key counts it. */
  apiKeyId?: string | null;
}

export interface SettleOptions {
  /** When given, a reservation of another user answers NOT_FOUND. */
  userId?: string;
  actor?: CreditActor;
}

export interface SettleResult {
  reservation: Reservation;
  charged: Micros;
  released: Micros;
  /** What was used beyond the reservation and could not be charged (the cap). */
  uncovered: Micros;
  balance: Balance;
}

export interface TransactionsPage {
  entries: LedgerEntry[];
  /** Opaque; pass back as `cursor` for the next (older) page. Null on the last page. */
  nextCursor: string | null;
}

export type MismatchCheck = 'balance' | 'reserved' | 'available' | 'chain' | 'version' | 'transfer' | 'refund';

/** One disagreement found by `verify()`. Values are micros (or seq numbers for `version`). */
export interface Mismatch {
  /** The user whose account disagrees; for a tenant's credit pool (`account: 'pool'`) the tenant id. */
  userId: string;
  /** Set for a tenant's credit pool; absent for a user's account. */
  account?: 'pool';
  /** The pool's tenant, when `account` is `pool`. */
  tenantId?: string;
  check: MismatchCheck;
  expected: number;
  actual: number;
  /** The ledger entry where a chain check broke. */
  entryId?: string;
  message: string;
}

/** How much an expired reservation's session really used; read inside the reaper's transaction. */
export type UsedMicros = (reservation: Reservation, trx: Queryable) => Micros | Promise<Micros>;

export interface CreditLedgerOptions {
  database: Database;
  /** The ledger's, pools' and budgets' storage (built by the composition root: `creditRepositories()`). */
  repositories: CreditRepositories;
  clock: Clock;
  audit: AuditLogger;
  metrics?: Metrics;
  /** This daemon's id, recorded as the owner of the reservations it makes. */
  instanceId?: string;
  /** Budgets checked at reservation (docs/credits.md, "Budgets"); none when absent. */
  budgets?: BudgetBook;
  /** Called in the settling transaction after a charge (the `credits.low_balance` webhook event). */
  onCharged?: (t: Queryable, charge: ChargeNotice) => Promise<void>;
}

/** A settlement that charged: the account's balance before and after. */
export interface ChargeNotice {
  userId: string;
  tenantId: string | null;
  sessionId: string | null;
  charged: Micros;
  balanceBefore: Micros;
  balanceAfter: Micros;
  availableAfter: Micros;
}

export const MAX_TTL_MS = 7 * 24 * 3600 * 1000;
export const DEFAULT_PAGE = 50;
export const MAX_PAGE = 100;
/** Accounts summed per statement by `verify()`, at most. */
const VERIFY_PAGE = 100;
/**
 * Ledger entries summed per statement by `verify()`, at most (beyond one account's worth when
 * the account is small): a bigger account is summed alone, in steps of this many entries.
 */
const VERIFY_STEP_ENTRIES = 1_000;

type Finish = 'settled' | 'released' | 'expired';

/**
 * The credit ledger: accounts, an append-only list of entries, and reservations
 * held as leases (two-phase, TigerBeetle style: a pending hold, then exactly one
 * of settle / release / expire).
 *
 * Every operation is one database transaction that first locks the user's
 * account row (SELECT ... FOR UPDATE on Postgres; SQLite's BEGIN IMMEDIATE
 * already serializes writers), appends its entries, updates the account with a
 * version check and records its audit entry with the same transaction. Invariants
 * at every commit: balance = sum(entries.amount), reserved = sum(open
 * reservations), balance - reserved >= 0 (also a CHECK constraint).
 */
export class CreditLedger {
  private readonly database: Database;
  private readonly repos: CreditRepositories;
  private readonly clock: Clock;
  private readonly audit: AuditLogger;
  private readonly metrics: CreditMetrics | null;
  readonly instanceId: string;
  readonly budgets: BudgetBook | null;
  private readonly onCharged: CreditLedgerOptions['onCharged'];

  constructor(options: CreditLedgerOptions) {
    this.database = options.database;
    this.repos = options.repositories;
    this.clock = options.clock;
    this.audit = options.audit;
    this.metrics = options.metrics ? CreditMetrics.for(options.metrics, options.repositories.ledger) : null;
    this.instanceId = options.instanceId ?? `daemon_${randomBytes(6).toString('hex')}`;
    this.budgets = options.budgets ?? null;
    this.onCharged = options.onCharged;
  }

  /** Adds credits to a user's balance (kind `grant`). Idempotent per (user, key) when a key is given. */
  async grant(input: GrantInput, trx?: Queryable): Promise<GrantResult> {
    assertPositive(input.amount, 'amount');
    const reason = cleanReason(input.reason);
    const key = input.idempotencyKey ?? null;
    if (key !== null) assertIdempotencyKey(key);
    const result = await this.run(trx, async (t) => {
      const account = await this.lockAccount(t, input.userId, true);
      if (key !== null) {
        const previous = await this.repos.ledger.keyedEntry(t, input.userId, key);
        if (previous) {
          if (previous.kind !== 'grant' || previous.amount !== input.amount || previous.reason !== reason) {
            throw new GatewayError('IDEMPOTENCY_KEY_REUSED', 'this idempotency key was used for a different grant');
          }
          return { entry: toEntry(previous), balance: toBalance(account), replayed: true };
        }
      }
      const [entry] = await this.applyEntries(t, account, [
        { kind: 'grant', amount: input.amount, reservedDelta: ZERO, reason, actor: input.actor, idempotencyKey: key },
      ]);
      await this.audit.record(
        {
          action: 'credits.grant',
          outcome: 'success',
          actor: input.actor,
          tenantId: account.tenant_id,
          target: { type: 'user', id: input.userId },
          details: { amount: formatCredits(input.amount), entry_id: entry.id, reason },
        },
        t,
      );
      return { entry, balance: toBalance(account), replayed: false };
    });
    if (!result.replayed) this.metrics?.grantedMicros.inc(input.amount);
    return result;
  }

  /**
   * A signed correction (kind `adjustment`); refused if it would leave less than
   * what is reserved. Idempotent per (user, key) when a key is given, like `grant`.
   */
  async adjust(input: AdjustInput, trx?: Queryable): Promise<AdjustResult> {
    if (!Number.isSafeInteger(input.amount) || input.amount === 0 || Math.abs(input.amount) > MAX_MICROS) {
      throw invalidField('amount must be a non-zero number of credits', [
        { field: 'amount', message: 'must not be zero' },
      ]);
    }
    const reason = cleanReason(input.reason);
    const key = input.idempotencyKey ?? null;
    if (key !== null) assertIdempotencyKey(key);
    return this.run(trx, async (t) => {
      const account = await this.lockAccount(t, input.userId, true);
      const previous = key === null ? undefined : await this.repos.ledger.keyedEntry(t, input.userId, key);
      if (previous) {
        if (previous.kind !== 'adjustment' || previous.amount !== input.amount || previous.reason !== reason) {
          throw new GatewayError('IDEMPOTENCY_KEY_REUSED', 'this idempotency key was used for a different adjustment');
        }
        return { entry: toEntry(previous), balance: toBalance(account), replayed: true };
      }
      if (account.balance + input.amount < account.reserved) {
        throw this.insufficient(negMicros(input.amount), available(account));
      }
      const [entry] = await this.applyEntries(t, account, [
        {
          kind: 'adjustment',
          amount: input.amount,
          reservedDelta: ZERO,
          reason,
          actor: input.actor,
          idempotencyKey: key,
        },
      ]);
      await this.audit.record(
        {
          action: 'credits.adjust',
          outcome: 'success',
          actor: input.actor,
          tenantId: account.tenant_id,
          target: { type: 'user', id: input.userId },
          details: { amount: formatCredits(input.amount), entry_id: entry.id, reason },
        },
        t,
      );
      return { entry, balance: toBalance(account), replayed: false };
    });
  }

  /**
   * Gives back (part of) what a finished session was charged: one `refund` entry
   * (amount +x, reserved_delta 0, naming the session, its reservation and the API
   * key that spent), audited as `credits.refund`. Under the session's user's
   * account lock it reads the session's reservations (`charged`) and its earlier
   * refunds, so parallel refunds never give back more than was charged in total.
   * Refusals, with nothing written: unknown session 404 NOT_FOUND; a session still
   * running (or holding an open reservation) 409 INVALID_STATE; charged nothing,
   * nothing left, or `amount` above what is left 409 REFUND_EXCEEDS_CHARGE. With a
   * key it happens once per (user, key); the same key for another refund is 409
   * IDEMPOTENCY_KEY_REUSED.
   */
  async refund(input: RefundInput, trx?: Queryable): Promise<RefundResult> {
    const asked = input.amount ?? null;
    if (asked !== null) assertPositive(asked, 'amount');
    const reason = cleanReason(input.reason);
    const key = input.idempotencyKey ?? null;
    if (key !== null) assertIdempotencyKey(key);
    if (!isId(input.sessionId, 'ses')) throw notFound('session');
    return this.run(trx, async (t): Promise<RefundResult> => {
      const peek = await this.repos.ledger.sessionOwner(t, input.sessionId);
      if (!peek) throw notFound('session');
      // The account lock first (as everywhere): settlement takes it too, so what follows is stable.
      const account = await this.lockAccount(t, peek.user_id, false);
      const session = await this.repos.ledger.sessionStatus(t, input.sessionId);
      const reservations = await this.repos.ledger.sessionReservations(
        t,
        peek.user_id,
        input.sessionId,
        peek.reservation_id,
      );
      const refunds = await this.repos.ledger.refundedTotal(t, peek.user_id, input.sessionId);
      const charged = reservations.reduce((sum, r) => addMicros(sum, toMicros(r.charged)), ZERO);
      const refunded = toMicros(Number(refunds.total));
      const previous = key === null || !account ? undefined : await this.repos.ledger.keyedEntry(t, peek.user_id, key);
      if (previous) {
        if (
          previous.kind !== 'refund' ||
          previous.session_id !== input.sessionId ||
          previous.reason !== reason ||
          (asked !== null && previous.amount !== asked)
        ) {
          throw new GatewayError('IDEMPOTENCY_KEY_REUSED', 'this idempotency key was used for a different refund');
        }
        return {
          entry: toEntry(previous),
          balance: toBalance(account!),
          charged,
          refunded,
          refundable: subMicros(charged, refunded),
          replayed: true,
        };
      }
      if (session.status === 'running' || reservations.some((r) => r.status === 'open')) {
        throw new GatewayError('INVALID_STATE', 'the session is still running: refund its charge once it has ended');
      }
      const refundable = subMicros(charged, refunded);
      const amount = asked ?? refundable;
      if (!account || refundable <= 0 || amount > refundable) {
        const why =
          charged === 0
            ? 'the session was charged nothing'
            : refundable <= 0
              ? 'its charge was refunded in full already'
              : 'the amount exceeds what is left of its charge';
        throw new GatewayError('REFUND_EXCEEDS_CHARGE', `cannot refund this session: ${why}`, {
          details: {
            charged: formatCredits(charged),
            refunded: formatCredits(refunded),
            refundable: formatCredits(refundable),
            requested: formatCredits(amount),
          },
        });
      }
      // The entry names the reservation that was charged (the last one, should there be several).
      const reservation = [...reservations].reverse().find((r) => r.charged > 0)!;
      const [entry] = await this.applyEntries(t, account, [
        {
          kind: 'refund',
          amount,
          reservedDelta: ZERO,
          reason,
          actor: input.actor,
          reservationId: reservation.id,
          sessionId: input.sessionId,
          idempotencyKey: key,
          apiKeyId: reservation.api_key_id,
        },
      ]);
      const total = addMicros(refunded, amount);
      await this.audit.record(
        {
          action: 'credits.refund',
          outcome: 'success',
          actor: input.actor,
          tenantId: account.tenant_id,
          target: { type: 'session', id: input.sessionId },
          details: {
            user_id: account.user_id,
            amount: formatCredits(amount),
            entry_id: entry.id,
            reservation_id: reservation.id,
            reason,
            charged: formatCredits(charged),
            refunded: formatCredits(total),
          },
        },
        t,
      );
      return {
        entry,
        balance: toBalance(account),
        charged,
        refunded: total,
        refundable: subMicros(charged, total),
        replayed: false,
      };
    });
  }

  /**
   * Holds `amount` of the user's available credits until `now + ttlMs`. Refuses
   * with 402 INSUFFICIENT_CREDITS (details in credits: required, available,
   * shortfall). Pass `trx` to reserve inside the caller's transaction (the execute
   * path: lock account, count sessions, reserve, insert the session, one commit).
   */
  async reserve(input: ReserveInput, trx?: Queryable): Promise<Reservation> {
    assertPositive(input.amount, 'amount');
    assertTtl(input.ttlMs);
    return this.run(trx, async (t) => {
      const account = await this.lockAccount(t, input.userId, true);
      const free = available(account);
      if (input.amount > free) throw this.insufficient(input.amount, free);
      const now = this.clock.now();
      const apiKeyId = input.apiKeyId ?? null;
      const budget = this.budgets
        ? await this.budgets.admit(
            t,
            { apiKeyId, userId: account.user_id, tenantId: account.tenant_id },
            input.amount,
            now,
            input.actor,
          )
        : null;
      if (budget) this.database.afterCommit(t, budget.announce);
      const row: ReservationRow = {
        id: newId('res', now),
        user_id: account.user_id,
        tenant_id: account.tenant_id,
        amount: input.amount,
        status: 'open',
        charged: 0,
        session_id: input.sessionId ?? null,
        expires_at: now + input.ttlMs,
        created_at: now,
        settled_at: null,
        owner: this.instanceId,
        api_key_id: apiKeyId,
        budget_windows: budget && budget.refs.length > 0 ? JSON.stringify(budget.refs) : null,
      };
      await this.repos.ledger.insertReservation(t, row);
      const [entry] = await this.applyEntries(t, account, [
        {
          kind: 'reserve',
          amount: ZERO,
          reservedDelta: input.amount,
          reason: null,
          actor: input.actor,
          reservationId: row.id,
          sessionId: row.session_id,
          apiKeyId,
        },
      ]);
      await this.audit.record(
        {
          action: 'credits.reserve',
          outcome: 'success',
          actor: input.actor,
          tenantId: account.tenant_id,
          target: { type: 'reservation', id: row.id },
          details: {
            amount: formatCredits(input.amount),
            expires_at: row.expires_at,
            session_id: row.session_id,
            entry_id: entry.id,
          },
        },
        t,
      );
      return toReservation(row);
    });
  }

  /**
   * The lease heartbeat: moves an open reservation's `expires_at` to `now + ttlMs`.
   * Allowed while the reservation is open, even just past its expiry if the reaper
   * has not taken it yet (the hold is still intact); anything else is INVALID_STATE.
   */
  async extend(
    reservationId: string,
    ttlMs: number,
    options: { userId?: string } = {},
    trx?: Queryable,
  ): Promise<Reservation> {
    assertTtl(ttlMs);
    return this.run(trx, async (t) => {
      const { row } = await this.lockReservation(t, reservationId, options.userId);
      if (row.status !== 'open') throw new GatewayError('INVALID_STATE', `reservation is ${row.status}, not open`);
      const expiresAt = this.clock.now() + ttlMs;
      await this.repos.ledger.setReservationExpiry(t, row.id, expiresAt);
      return toReservation({ ...row, expires_at: expiresAt });
    });
  }

  /**
   * Settles an open reservation exactly once: charges min(actual, amount),
   * releases the rest, marks it settled. A reservation that is no longer open is
   * refused with INVALID_STATE and nothing changes; an unknown id (or another
   * user's, when `userId` is given) is NOT_FOUND.
   */
  async settle(
    reservationId: string,
    actual: Micros,
    options: SettleOptions = {},
    trx?: Queryable,
  ): Promise<SettleResult> {
    assertUsage(actual);
    return required(await this.finish('settled', reservationId, () => actual, options, trx));
  }

  /** Gives the whole hold back (nothing charged); e.g. the agent never started. */
  async release(reservationId: string, options: SettleOptions = {}, trx?: Queryable): Promise<SettleResult> {
    return required(await this.finish('released', reservationId, () => ZERO, options, trx));
  }

  /**
   * Settles every open reservation whose lease ran out by `now`, each in its own
   * transaction, as `expired`: charges what `usedMicros` says was used (default 0:
   * release all) and releases the rest. Safe to run on several daemons at once: a
   * reservation settled meanwhile is skipped, and so is one `skip` names (a
   * session this daemon still runs, which it settles itself). Returns how many it settled.
   */
  async reapExpired(
    now: number = this.clock.now(),
    options: {
      usedMicros?: UsedMicros;
      batchSize?: number;
      skip?: (sessionId: string | null) => boolean;
      /** Called after each reservation's transaction committed. */
      onReaped?: (reservationId: string) => void | Promise<void>;
    } = {},
  ): Promise<number> {
    const used: UsedMicros = options.usedMicros ?? (() => ZERO);
    const batchSize = options.batchSize ?? 100;
    let settled = 0;
    let after = '';
    for (;;) {
      const batch = await this.repos.ledger.expiredReservations(now, after, batchSize);
      for (const { id, session_id: sessionId } of batch) {
        if (options.skip?.(sessionId)) continue;
        try {
          const result = await this.finish('expired', id, used, { actor: SYSTEM_ACTOR }, undefined, now);
          if (result) {
            settled += 1;
            await options.onReaped?.(id);
          }
        } catch (err) {
          // Settled or released by its owner between our read and our lock: nothing to reap.
          if (!(err instanceof GatewayError && (err.code === 'INVALID_STATE' || err.code === 'NOT_FOUND'))) throw err;
        }
      }
      if (batch.length < batchSize) return settled;
      after = batch[batch.length - 1]!.id;
    }
  }

  /**
   * The user's balance, reserved total and what is available; zeros for a user
   * who never had credits. `reach` (daemon/policies) scopes the read in SQL: an
   * admin of one tenant sees zeros for another tenant's user.
   */
  async balance(userId: string, reach: Reach = EVERYTHING, trx?: Queryable): Promise<Balance> {
    if (reachFilter(reach) === null) {
      const own = await this.repos.ledger.ownBalance(userId, trx);
      return own ? toBalance(own) : { balance: ZERO, reserved: ZERO, available: ZERO };
    }
    const row = await this.repos.ledger.accountWithin(userId, reach, trx);
    return row ? toBalance(row) : { balance: ZERO, reserved: ZERO, available: ZERO };
  }

  /** One reservation, or undefined (scoped to `userId` when given, and to `reach`). */
  async reservation(
    reservationId: string,
    options: { userId?: string; reach?: Reach } = {},
  ): Promise<Reservation | undefined> {
    if (!isId(reservationId, 'res')) return undefined;
    const row = await this.repos.ledger.findReservation(reservationId, {
      ...(options.userId !== undefined ? { userId: options.userId } : {}),
      reach: options.reach ?? EVERYTHING,
    });
    return row ? toReservation(row) : undefined;
  }

  /**
   * The user's ledger, newest first. `limit` 1..100 (default 50); `cursor` from
   * the previous page; `reach` scopes the read in SQL as in `balance()`.
   */
  async transactions(
    userId: string,
    options: { limit?: number; cursor?: string | null; reach?: Reach } = {},
  ): Promise<TransactionsPage> {
    const limit = pageLimit(options.limit);
    const before = options.cursor ? decodeCursor(options.cursor) : null;
    const reach = options.reach ?? EVERYTHING;
    const rows = await this.repos.ledger.entries(userId, { limit: limit + 1, before, reach });
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return {
      entries: page.map(toEntry),
      nextCursor: rows.length > limit && last ? encodeCursor(last.seq) : null,
    };
  }

  /**
   * Recomputes every account from its ledger and reservations and lists each
   * disagreement: balance vs sum of entries, reserved vs sum of open reservations,
   * available >= 0, the balance_after / reserved_after chain entry by entry, and
   * the account version vs its last entry. An empty list means clean.
   *
   * Accounts are read in pages of at most {@link VERIFY_PAGE} accounts and
   * {@link VERIFY_STEP_ENTRIES} entries (by the versions the accounts claim), each page
   * summed in SQL in one statement (daemon/storage/repos/ledger-verify.ts); an account
   * with more entries is summed alone, in steps of that many. Time and memory per
   * statement are bounded by the step, not the ledger nor the biggest account, and the
   * pass yields between statements (on SQLite each runs on the event loop). Only an
   * account whose sums disagree (or that has refunds) is then checked entry by entry
   * under its lock, so concurrent traffic cannot produce false alarms, and the
   * mismatches are those of that check.
   */
  async verify(): Promise<Mismatch[]> {
    const mismatches: Mismatch[] = [];
    const summaries = this.repos.verify;
    const pause = () => new Promise<void>((resolve) => setImmediate(resolve));
    for (let after: string | null = null; ; ) {
      const accounts = await summaries.accountVersions(after, VERIFY_PAGE);
      if (accounts.length === 0) break;
      let page: Array<{ userId: string; clean: boolean }>;
      if (accounts[0]!.version > VERIFY_STEP_ENTRIES) {
        page = [await summaries.accountInSteps(accounts[0]!.userId, VERIFY_STEP_ENTRIES, pause)];
      } else {
        let n = 0;
        for (let entries = 0; n < accounts.length; n++) {
          entries += Math.max(0, accounts[n]!.version);
          if (n > 0 && entries > VERIFY_STEP_ENTRIES) break;
        }
        page = await summaries.accountPage(after, n);
        if (page.length === 0) break;
      }
      for (const { userId, clean } of page) {
        if (clean) continue;
        await this.database.transaction(async (t) => {
          const account = await this.lockAccount(t, userId, false);
          if (!account) return;
          mismatches.push(...(await this.verifyAccount(t, account)));
        });
      }
      after = page[page.length - 1]!.userId;
      // SQLite runs each statement on the event loop: let requests through between pages.
      await pause();
    }
    mismatches.push(...(await this.verifyPools()));
    return mismatches;
  }

  private async verifyAccount(t: Queryable, account: AccountRow): Promise<Mismatch[]> {
    const out: Mismatch[] = [];
    const userId = account.user_id;
    const add = (check: MismatchCheck, expected: number, actual: number, message: string, entryId?: string): void => {
      out.push({ userId, check, expected, actual, message, ...(entryId ? { entryId } : {}) });
    };

    const checks = this.repos.verify;
    const ledgerSum = await checks.entrySum(t, userId);
    if (ledgerSum !== account.balance)
      add('balance', ledgerSum, account.balance, 'balance differs from the sum of ledger amounts');

    const openSum = await checks.openReservedSum(t, userId);
    if (openSum !== account.reserved)
      add('reserved', openSum, account.reserved, 'reserved differs from the sum of open reservations');
    if (account.balance < account.reserved)
      add('available', account.reserved, account.balance, 'available is negative');

    // Walk the chain in seq order, in pages, so a long history does not load at once.
    let prevBalance = 0;
    let prevReserved = 0;
    let expectedSeq = 1;
    let lastSeq = 0;
    for (;;) {
      const rows = await checks.entriesFrom(t, userId, expectedSeq, 1000);
      for (const e of rows) {
        if (e.seq !== expectedSeq) add('chain', expectedSeq, e.seq, 'ledger sequence has a gap', e.id);
        if (e.balance_after !== prevBalance + e.amount) {
          add(
            'chain',
            prevBalance + e.amount,
            e.balance_after,
            'balance_after does not follow from the previous entry',
            e.id,
          );
        }
        if (e.reserved_after !== prevReserved + e.reserved_delta) {
          add(
            'chain',
            prevReserved + e.reserved_delta,
            e.reserved_after,
            'reserved_after does not follow from the previous entry',
            e.id,
          );
        }
        if (e.balance_after < e.reserved_after)
          add('available', e.reserved_after, e.balance_after, 'entry left available negative', e.id);
        prevBalance = e.balance_after;
        prevReserved = e.reserved_after;
        expectedSeq = e.seq + 1;
        lastSeq = e.seq;
      }
      if (rows.length < 1000) break;
    }
    if (prevBalance !== account.balance)
      add('chain', prevBalance, account.balance, 'balance differs from the last balance_after');
    if (prevReserved !== account.reserved)
      add('chain', prevReserved, account.reserved, 'reserved differs from the last reserved_after');
    if (lastSeq !== account.version)
      add('version', lastSeq, account.version, 'account version differs from its last ledger seq');

    // Refunds give back a session's charge at most: per session, sum(refund) <= sum(charged of its reservations).
    for (const { sessionId, total } of await checks.refundsBySession(t, userId)) {
      const charged = sessionId === null ? 0 : await checks.chargedOfSession(t, userId, sessionId);
      if (total > charged) {
        add('refund', charged, total, `refunds of session ${sessionId ?? '(none)'} exceed its charge`);
      }
    }
    return out;
  }

  // -- tenant credit pools (docs/credits.md, "Tenant credit pools") ----------

  /**
   * Adds credits to a tenant's pool (kind `grant`; platform admins), creating
   * the pool on first use; an unknown tenant is NOT_FOUND. Idempotent per
   * (tenant, key) when a key is given. Audited as `credits.pool_grant`.
   */
  async grantPool(input: PoolGrantInput, trx?: Queryable): Promise<PoolGrantResult> {
    assertPositive(input.amount, 'amount');
    const reason = cleanReason(input.reason);
    const key = input.idempotencyKey ?? null;
    if (key !== null) assertIdempotencyKey(key);
    return this.run(trx, async (t) => {
      const pool = await lockPool(this.repos.pools, t, input.tenantId, true, this.clock.now());
      if (key !== null) {
        const previous = await this.repos.pools.keyedEntry(t, pool.tenant_id, key);
        if (previous) {
          if (previous.kind !== 'grant' || previous.amount !== input.amount || previous.reason !== reason) {
            throw new GatewayError(
              'IDEMPOTENCY_KEY_REUSED',
              'this idempotency key was used for a different pool grant',
            );
          }
          return { entry: toPoolEntry(previous), pool: toPoolBalance(pool.tenant_id, pool), replayed: true };
        }
      }
      const change = { kind: 'grant' as const, amount: input.amount, reason, actor: input.actor, idempotencyKey: key };
      const entry = await appendPoolEntry(this.repos.pools, t, pool, change, this.clock.now());
      await this.audit.record(
        {
          action: 'credits.pool_grant',
          outcome: 'success',
          actor: input.actor,
          tenantId: pool.tenant_id,
          target: { type: 'tenant', id: pool.tenant_id },
          details: {
            amount: formatCredits(input.amount),
            entry_id: entry.id,
            reason,
            pool_balance: formatCredits(toMicros(pool.balance)),
          },
        },
        t,
      );
      return { entry, pool: toPoolBalance(pool.tenant_id, pool), replayed: false };
    });
  }

  /**
   * Moves credits from a tenant's pool to one of its members, in one
   * transaction: the pool's `transfer` entry (-amount) and the member's `grant`
   * entry (+amount), each naming the other, and one `credits.pool_transfer`
   * audit entry. Locks the pool, then the member's account (one order
   * everywhere, so no deadlocks). A pool holding less than `amount` is 402
   * INSUFFICIENT_CREDITS naming the pool, and nothing is written; a user of
   * another tenant is NOT_FOUND. With a key it happens once per (member, key).
   */
  async transferFromPool(input: PoolTransferInput, trx?: Queryable): Promise<PoolTransferResult> {
    assertPositive(input.amount, 'amount');
    const reason = cleanReason(input.reason);
    const key = input.idempotencyKey ?? null;
    if (key !== null) assertIdempotencyKey(key);
    const result = await this.run(trx, async (t): Promise<PoolTransferResult> => {
      const pool = await lockPool(this.repos.pools, t, input.tenantId, false, this.clock.now());
      const account = await this.lockAccount(t, input.userId, true);
      if (account.tenant_id !== input.tenantId) throw notFound('user');
      if (key !== null) {
        const previous = await this.repos.ledger.keyedEntry(t, input.userId, key);
        if (previous) {
          const poolEntryId = previous.pool_entry_id;
          const poolEntry = poolEntryId === null ? undefined : await this.repos.pools.entry(t, poolEntryId);
          if (
            previous.kind !== 'grant' ||
            previous.amount !== input.amount ||
            previous.reason !== reason ||
            !poolEntry ||
            poolEntry.tenant_id !== input.tenantId
          ) {
            throw new GatewayError('IDEMPOTENCY_KEY_REUSED', 'this idempotency key was used for a different grant');
          }
          return {
            entry: toEntry(previous),
            poolEntry: toPoolEntry(poolEntry),
            balance: toBalance(account),
            pool: toPoolBalance(input.tenantId, pool),
            replayed: true,
          };
        }
      }
      const free = pool ? toMicros(pool.balance) : ZERO;
      if (!pool || input.amount > free) throw poolInsufficient(input.tenantId, input.amount, free);
      const now = this.clock.now();
      const poolEntryId = newId('txn', now);
      const memberEntryId = newId('txn', now);
      const poolEntry = await appendPoolEntry(
        this.repos.pools,
        t,
        pool,
        {
          id: poolEntryId,
          kind: 'transfer',
          amount: negMicros(input.amount),
          reason,
          actor: input.actor,
          userId: account.user_id,
          transferEntryId: memberEntryId,
        },
        now,
      );
      const [entry] = await this.applyEntries(t, account, [
        {
          id: memberEntryId,
          kind: 'grant',
          amount: input.amount,
          reservedDelta: ZERO,
          reason,
          actor: input.actor,
          idempotencyKey: key,
          poolEntryId,
        },
      ]);
      await this.audit.record(
        {
          action: 'credits.pool_transfer',
          outcome: 'success',
          actor: input.actor,
          tenantId: pool.tenant_id,
          target: { type: 'user', id: account.user_id },
          details: {
            amount: formatCredits(input.amount),
            reason,
            entry_id: entry.id,
            pool_entry_id: poolEntry.id,
            pool_balance: formatCredits(poolEntry.balanceAfter),
          },
        },
        t,
      );
      return {
        entry,
        poolEntry,
        balance: toBalance(account),
        pool: toPoolBalance(pool.tenant_id, pool),
        replayed: false,
      };
    });
    if (!result.replayed) this.metrics?.grantedMicros.inc(input.amount);
    return result;
  }

  /** A tenant's pool (zero for a tenant whose pool never held credits), or undefined for an unknown tenant. */
  async pool(tenantId: string, trx?: Queryable): Promise<PoolBalance | undefined> {
    if (!isId(tenantId, 'ten')) return undefined;
    const row = await this.repos.pools.tenantPool(tenantId, trx);
    if (!row) return undefined;
    return toPoolBalance(
      row.id,
      row.balance === null || row.updated_at === null
        ? undefined
        : { balance: row.balance, updated_at: row.updated_at },
    );
  }

  /** Pools that ever held credits, by tenant id; `tenantId` narrows to one (a tenant admin's own). */
  async pools(
    options: { limit?: number; after?: string | null; tenantId?: string } = {},
  ): Promise<{ pools: PoolBalance[]; next: string | null }> {
    const limit = pageLimit(options.limit);
    const rows = await this.repos.pools.list({
      limit: limit + 1,
      ...(options.after ? { after: options.after } : {}),
      ...(options.tenantId !== undefined ? { tenantId: options.tenantId } : {}),
    });
    const page = rows.slice(0, limit);
    return {
      pools: page.map((r) => toPoolBalance(r.tenant_id, r)),
      next: rows.length > limit ? page[page.length - 1]!.tenant_id : null,
    };
  }

  /** A pool's ledger, newest first; `limit` 1..100 (default 50), `cursor` from the previous page. */
  async poolEntries(
    tenantId: string,
    options: { limit?: number; cursor?: string | null } = {},
  ): Promise<PoolEntriesPage> {
    const limit = pageLimit(options.limit);
    const before = options.cursor ? decodeCursor(options.cursor) : null;
    const rows = await this.repos.pools.entries(tenantId, { limit: limit + 1, before });
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return { entries: page.map(toPoolEntry), nextCursor: rows.length > limit && last ? encodeCursor(last.seq) : null };
  }

  /** `verify()` for the pools: each read under its lock, then the member entries that name a pool entry. */
  private async verifyPools(): Promise<Mismatch[]> {
    const mismatches: Mismatch[] = [];
    for (const tenantId of await this.repos.verify.poolTenantIds()) {
      await this.database.transaction(async (t) => {
        const pool = await lockPool(this.repos.pools, t, tenantId, false, this.clock.now());
        if (pool) mismatches.push(...(await verifyPool(this.repos.verify, t, pool)));
      });
    }
    mismatches.push(...(await verifyPoolReferences(this.repos.verify)));
    return mismatches;
  }

  // -- internals ------------------------------------------------------------

  private run<T>(trx: Queryable | undefined, fn: (t: Queryable) => Promise<T>): Promise<T> {
    return trx ? fn(trx) : this.database.transaction(fn);
  }

  /**
   * Locks the user's account row for the rest of the transaction, creating it
   * first when `create` (race-safe: INSERT ... ON CONFLICT DO NOTHING, then the
   * locking read sees whichever insert won).
   */
  private async lockAccount(t: Queryable, userId: string, create: true): Promise<AccountRow>;
  private async lockAccount(t: Queryable, userId: string, create: false): Promise<AccountRow | undefined>;
  private async lockAccount(t: Queryable, userId: string, create: boolean): Promise<AccountRow | undefined> {
    // FOR NO KEY UPDATE on Postgres: see LedgerRepository.lockAccount.
    const found = await this.repos.ledger.lockAccount(t, userId);
    if (found || !create) return found;
    const user = await this.repos.ledger.accountHolder(t, userId);
    if (!user) throw notFound('user');
    await this.repos.ledger.createAccount(t, user, this.clock.now());
    const created = await this.repos.ledger.lockAccount(t, userId);
    if (!created) throw new Error(`credit account of ${userId} vanished after insert`);
    return created;
  }

  /** Finds a reservation (NOT_FOUND when absent or another user's), then locks its account and the row, in that order. */
  private async lockReservation(
    t: Queryable,
    reservationId: string,
    userId: string | undefined,
  ): Promise<{ row: ReservationRow; account: AccountRow }> {
    if (!isId(reservationId, 'res')) throw notFound('reservation');
    const peek = await this.repos.ledger.reservationOwner(t, reservationId);
    if (!peek || (userId !== undefined && peek.user_id !== userId)) throw notFound('reservation');
    // Always account first, then reservation: one lock order everywhere, so no deadlocks.
    const account = await this.lockAccount(t, peek.user_id, false);
    const row = await this.repos.ledger.lockReservation(t, reservationId);
    if (!row || !account) throw notFound('reservation');
    return { row, account };
  }

  private async finish(
    how: Finish,
    reservationId: string,
    used: UsedMicros,
    options: SettleOptions,
    trx?: Queryable,
    reapAt?: number,
  ): Promise<SettleResult | null> {
    const result = await this.run(trx, async (t) => {
      const { row, account } = await this.lockReservation(t, reservationId, options.userId);
      if (row.status !== 'open') throw new GatewayError('INVALID_STATE', `reservation is already ${row.status}`);
      if (how === 'expired' && reapAt !== undefined && row.expires_at > reapAt) return null; // extended meanwhile
      const now = this.clock.now();
      const reservation = toReservation(row);
      const actual = how === 'released' ? ZERO : await used(reservation, t);
      assertUsage(actual);
      const amount = toMicros(row.amount);
      const charged = minMicros(actual, amount);
      const released = subMicros(amount, charged);
      const actor = options.actor ?? SYSTEM_ACTOR;
      const updated = await this.repos.ledger.finishReservation(t, row.id, { status: how, charged, settledAt: now });
      if (updated !== 1) throw new Error(`reservation ${row.id} changed under its lock`);
      // A charge and/or a release (the reservation amount is positive, so at least one), then one account write.
      const common = {
        actor,
        reservationId: row.id,
        sessionId: row.session_id,
        apiKeyId: row.api_key_id,
        reason: how === 'settled' ? null : how,
      };
      const changes: EntryChange[] = [];
      if (charged > 0)
        changes.push({ ...common, kind: 'charge', amount: negMicros(charged), reservedDelta: negMicros(charged) });
      if (released > 0) changes.push({ ...common, kind: 'release', amount: ZERO, reservedDelta: negMicros(released) });
      const balanceBefore = toMicros(account.balance);
      await this.applyEntries(t, account, changes);
      await giveBackToBudgets(this.repos.budgets, t, row.budget_windows, released, now);
      if (charged > 0 && this.onCharged) {
        await this.onCharged(t, {
          userId: account.user_id,
          tenantId: account.tenant_id,
          sessionId: row.session_id,
          charged,
          balanceBefore,
          balanceAfter: toMicros(account.balance),
          availableAfter: available(account),
        });
      }
      const action = how === 'settled' ? 'credits.settle' : how === 'released' ? 'credits.release' : 'credits.expire';
      await this.audit.record(
        {
          action,
          outcome: 'success',
          actor,
          tenantId: row.tenant_id,
          target: { type: 'reservation', id: row.id },
          details: {
            reserved: formatCredits(amount),
            charged: formatCredits(charged),
            released: formatCredits(released),
            session_id: row.session_id,
          },
        },
        t,
      );
      return {
        reservation: { ...reservation, status: how, charged, settledAt: now },
        charged,
        released,
        uncovered: subMicros(actual, charged),
        balance: toBalance(account),
      };
    });
    if (result) {
      this.metrics?.chargedMicros.inc(result.charged);
      this.metrics?.releasedMicros.inc(result.released);
    }
    return result;
  }

  /**
   * Applies a change to the locked account: appends its entries in order (the
   * next seq numbers, each balance_after / reserved_after following from the one
   * before), applies them to the in-memory account, then writes the account back
   * once; the version check makes a missed lock fail loudly instead of losing an
   * update.
   */
  private async applyEntries<const C extends readonly EntryChange[]>(
    t: Queryable,
    account: AccountRow,
    changes: C,
  ): Promise<{ -readonly [K in keyof C]: LedgerEntry }> {
    const entries: LedgerEntry[] = [];
    for (const e of changes) {
      const now = this.clock.now();
      const row: EntryRow = {
        id: e.id ?? newId('txn', now),
        user_id: account.user_id,
        tenant_id: account.tenant_id,
        seq: account.version + 1,
        kind: e.kind,
        amount: e.amount,
        reserved_delta: e.reservedDelta,
        balance_after: addMicros(toMicros(account.balance), e.amount),
        reserved_after: addMicros(toMicros(account.reserved), e.reservedDelta),
        reason: e.reason,
        actor_type: e.actor.type,
        actor_id: e.actor.id,
        reservation_id: e.reservationId ?? null,
        session_id: e.sessionId ?? null,
        idempotency_key: e.idempotencyKey ?? null,
        created_at: now,
        pool_entry_id: e.poolEntryId ?? null,
        api_key_id: e.apiKeyId ?? null,
      };
      if (row.reserved_after < 0 || row.balance_after < row.reserved_after) {
        throw new Error(`ledger entry would break the account invariants of ${account.user_id}`);
      }
      await this.repos.ledger.insertEntry(t, row);
      account.balance = row.balance_after;
      account.reserved = row.reserved_after;
      account.version = row.seq;
      entries.push(toEntry(row));
    }
    if ((await this.repos.ledger.saveAccount(t, account, this.clock.now())) !== 1) {
      throw new Error(`credit account of ${account.user_id} changed under its lock`);
    }
    return entries as { -readonly [K in keyof C]: LedgerEntry };
  }

  private insufficient(required: Micros, free: Micros): GatewayError {
    const shortfall = subMicros(required, free);
    return new GatewayError('INSUFFICIENT_CREDITS', 'not enough credits available', {
      details: {
        required: formatCredits(required),
        available: formatCredits(free),
        shortfall: formatCredits(shortfall),
      },
    });
  }
}

// -- helpers ------------------------------------------------------------------

/** A page size: 1..MAX_PAGE, DEFAULT_PAGE when not given. */
function pageLimit(limit: number | undefined): number {
  const n = limit ?? DEFAULT_PAGE;
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_PAGE) {
    throw invalidField(`limit must be an integer from 1 to ${MAX_PAGE}`, [
      { field: 'limit', message: `must be 1..${MAX_PAGE}` },
    ]);
  }
  return n;
}

function required<T>(value: T | null): T {
  if (value === null) throw new Error('settlement produced no result');
  return value;
}

function assertPositive(amount: number, field: string): asserts amount is Micros {
  if (!Number.isSafeInteger(amount) || amount <= 0 || amount > MAX_MICROS) {
    throw invalidField(`${field} must be a positive number of credits`, [
      { field, message: 'must be positive and at most 1e9 credits' },
    ]);
  }
}

function assertUsage(amount: number): asserts amount is Micros {
  if (!Number.isSafeInteger(amount) || amount < 0) {
    throw invalidField('actual usage must be a non-negative integer number of micros', [
      { field: 'actual', message: 'must be a non-negative integer of micros' },
    ]);
  }
}

function assertTtl(ttlMs: number): void {
  if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0 || ttlMs > MAX_TTL_MS) {
    throw invalidField('ttlMs must be a positive integer of at most 7 days', [
      { field: 'ttlMs', message: 'must be 1..604800000' },
    ]);
  }
}

function cleanReason(reason: string): string {
  const r = typeof reason === 'string' ? reason.trim() : '';
  if (r.length === 0 || r.length > 500) {
    throw invalidField('reason must be 1..500 characters', [{ field: 'reason', message: 'must be 1..500 characters' }]);
  }
  return r;
}

function available(account: AccountRow): Micros {
  return subMicros(toMicros(account.balance), toMicros(account.reserved));
}

function toBalance(account: Pick<AccountRow, 'balance' | 'reserved'>): Balance {
  const balance = toMicros(account.balance);
  const reserved = toMicros(account.reserved);
  return { balance, reserved, available: subMicros(balance, reserved) };
}

function toEntry(r: EntryRow): LedgerEntry {
  return {
    id: r.id,
    userId: r.user_id,
    tenantId: r.tenant_id,
    seq: r.seq,
    kind: r.kind,
    amount: toMicros(r.amount),
    reservedDelta: toMicros(r.reserved_delta),
    balanceAfter: toMicros(r.balance_after),
    reservedAfter: toMicros(r.reserved_after),
    reason: r.reason,
    actor: { type: r.actor_type as AuditActorType, id: r.actor_id },
    reservationId: r.reservation_id,
    sessionId: r.session_id,
    idempotencyKey: r.idempotency_key,
    createdAt: r.created_at,
    poolEntryId: r.pool_entry_id,
  };
}

function toReservation(r: ReservationRow): Reservation {
  return {
    id: r.id,
    userId: r.user_id,
    tenantId: r.tenant_id,
    amount: toMicros(r.amount),
    status: r.status,
    charged: toMicros(r.charged),
    sessionId: r.session_id,
    expiresAt: r.expires_at,
    createdAt: r.created_at,
    settledAt: r.settled_at,
    owner: r.owner,
    apiKeyId: r.api_key_id ?? null,
  };
}

function encodeCursor(seq: number): string {
  return Buffer.from(JSON.stringify({ s: seq })).toString('base64url');
}

function decodeCursor(cursor: string): number {
  try {
    if (cursor.length > 100) throw new Error('long');
    const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    const s = (parsed as { s?: unknown }).s;
    if (typeof s === 'number' && Number.isSafeInteger(s) && s > 0) return s;
  } catch {
    // fall through
  }
  throw invalidField('cursor is not valid', [{ field: 'cursor', message: 'not a cursor from a previous page' }]);
}
