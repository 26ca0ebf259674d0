import { DEFAULT_PAGE, type CreditLedger, type Mismatch } from '../../credits/ledger.js';
import { formatCredits, parseCredits, toMicros } from '../../credits/money.js';
import { creditAuthorityOf } from '../../credits/authority.js';
import { presentBalance, presentEntry, presentPool } from '../../credits/present.js';
import type { Queryable } from '../../storage/database.js';
import { hashRequest } from '../../idempotency/key.js';
import type { IdempotencyStore } from '../../idempotency/store.js';
import { assertCanGrant, reachFor } from '../../policies/index.js';
import type { UserAdminService } from '../../users/user-admin.js';
import { clientOf, principalOf } from '../middleware/authenticate.js';
import { bodyOf, cursorOf, limitOf } from '../context.js';
import { defineRoutes } from '../routes.js';

const GRANT_PATH = '/v1/admin/credits/grant';

interface GrantBody {
  user_id: string;
  amount: number;
  reason: string;
}

/**
 * A mismatch as JSON. Money checks compare micros (shown as decimal credits);
 * `version` and a gap in the chain compare sequence numbers, shown as they are.
 */
export function presentMismatch(m: Mismatch) {
  const seq = m.check === 'version' || (m.check === 'chain' && /sequence/.test(m.message));
  return {
    ...(m.account === 'pool' ? { account: 'pool' as const, tenant_id: m.tenantId ?? m.userId } : { user_id: m.userId }),
    check: m.check,
    expected: seq ? m.expected : formatCredits(toMicros(m.expected)),
    actual: seq ? m.actual : formatCredits(toMicros(m.actual)),
    unit: seq ? ('seq' as const) : ('credits' as const),
    ...(m.entryId ? { entry_id: m.entryId } : {}),
    message: m.message,
  };
}

/** Credits: the user's balance and ledger, and the admin grant, reads and verify. */
export function creditRoutes(deps: { ledger: CreditLedger; idempotency: IdempotencyStore; users: UserAdminService }) {
  const { ledger, idempotency, users } = deps;
  return defineRoutes([
    {
      method: 'GET',
      path: '/v1/credits/balance',
      summary: 'Your balance, what running sessions hold, and what is available, in credits.',
      tag: 'credits',
      auth: 'any',
      scope: 'credits:read',
      response: { status: 200, schema: 'CreditBalanceResponse' },
      handler: async (ctx) => {
        ctx.body = { success: true, ...presentBalance(await ledger.balance(principalOf(ctx).userId)) };
      },
    },
    {
      method: 'GET',
      path: '/v1/credits/transactions',
      summary: 'Your ledger, newest first, cursor-paginated.',
      tag: 'credits',
      auth: 'any',
      scope: 'credits:read',
      query: 'CreditTransactionsQuery',
      response: { status: 200, schema: 'CreditTransactionListResponse' },
      handler: async (ctx) => {
        const page = await ledger.transactions(principalOf(ctx).userId, { limit: limitOf(ctx, DEFAULT_PAGE), cursor: cursorOf(ctx) });
        ctx.body = { success: true, transactions: page.entries.map(presentEntry), next_cursor: page.nextCursor };
      },
    },
    {
      method: 'POST',
      path: GRANT_PATH,
      summary:
        "Grant credits to a user (by id or email): a platform admin adds them, a tenant admin draws them from its tenant's credit pool (never to itself). With an `Idempotency-Key` header a retry within 24 h answers the first grant (`Idempotent-Replayed: true`).",
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      body: 'CreditGrantRequest',
      response: { status: 201, schema: 'CreditGrantResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN', 'INSUFFICIENT_CREDITS', 'IDEMPOTENCY_KEY_REUSED', 'IDEMPOTENCY_KEY_IN_USE'],
      handler: async (ctx) => {
        const p = principalOf(ctx);
        const authority = creditAuthorityOf(p);
        const body = bodyOf<GrantBody>(ctx);
        // Everything that can refuse the request runs before the key is claimed; the grant and
        // its stored response then commit together.
        const amount = parseCredits(body.amount, 'amount');
        const user = await users.findUser(p, body.user_id, clientOf(ctx));
        assertCanGrant(p, user);
        const key = ctx.get('Idempotency-Key');
        let ledgerReplayed = false;
        const grant = async (trx?: Queryable): Promise<{ status: number; body: object }> => {
          if (authority.kind === 'tenant') {
            // A tenant admin mints nothing: the credits come out of its tenant's pool (402 when it is short).
            const r = await ledger.transferFromPool({
              tenantId: authority.tenantId,
              userId: user.id,
              amount,
              reason: body.reason,
              actor: { type: 'admin', id: p.userId },
              idempotencyKey: key ? `adm_${hashRequest({ admin: p.userId, key })}` : null,
            }, trx);
            ledgerReplayed = r.replayed;
            return {
              status: 201,
              body: { success: true, transaction: presentEntry(r.entry), balance: presentBalance(r.balance), pool: presentPool(r.pool) },
            };
          }
          const r = await ledger.grant({
            userId: user.id,
            amount,
            reason: body.reason,
            actor: { type: 'admin', id: p.userId },
            // The ledger keeps its own per-user key too, derived from the admin's: should the
            // stored response be gone (a daemon died mid-request, 24 h passed), a retry still
            // answers the first grant instead of granting twice.
            idempotencyKey: key ? `adm_${hashRequest({ admin: p.userId, key })}` : null,
          }, trx);
          ledgerReplayed = r.replayed;
          return { status: 201, body: { success: true, transaction: presentEntry(r.entry), balance: presentBalance(r.balance) } };
        };
        const result = key
          ? await idempotency.run(p.userId, key, hashRequest({ method: 'POST', path: GRANT_PATH, body }), grant)
          : { ...(await grant()), replayed: false };
        if (result.replayed || ledgerReplayed) ctx.set('Idempotent-Replayed', 'true');
        ctx.status = result.status;
        ctx.body = result.body;
      },
    },
    {
      method: 'GET',
      path: '/v1/admin/credits/balance',
      summary: "A user's balance (`user_id`: id or email).",
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      query: 'CreditAdminBalanceQuery',
      response: { status: 200, schema: 'CreditBalanceResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN'],
      handler: async (ctx) => {
        const p = principalOf(ctx);
        const user = await users.findUser(p, String(ctx.query.user_id), clientOf(ctx));
        ctx.body = { success: true, user_id: user.id, ...presentBalance(await ledger.balance(user.id, reachFor(p, 'admin'))) };
      },
    },
    {
      method: 'GET',
      path: '/v1/admin/credits/transactions',
      summary: "A user's ledger (`user_id`: id or email), newest first, cursor-paginated.",
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      query: 'CreditAdminTransactionsQuery',
      response: { status: 200, schema: 'CreditTransactionListResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN'],
      handler: async (ctx) => {
        const p = principalOf(ctx);
        const user = await users.findUser(p, String(ctx.query.user_id), clientOf(ctx));
        const page = await ledger.transactions(user.id, { limit: limitOf(ctx, DEFAULT_PAGE), cursor: cursorOf(ctx), reach: reachFor(p, 'admin') });
        ctx.body = { success: true, user_id: user.id, transactions: page.entries.map(presentEntry), next_cursor: page.nextCursor };
      },
    },
    {
      method: 'POST',
      path: '/v1/admin/credits/verify',
      summary: 'Recompute every account from its ledger and list each mismatch (platform admins).',
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'platform_admin',
      response: { status: 200, schema: 'CreditVerifyResponse' },
      errors: ['FORBIDDEN'],
      handler: async (ctx) => {
        const mismatches = await ledger.verify();
        ctx.body = { success: true, ok: mismatches.length === 0, mismatches: mismatches.map(presentMismatch) };
      },
    },
  ]);
}
