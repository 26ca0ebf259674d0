import { DEFAULT_PAGE, type CreditLedger, type Mismatch } from '../../credits/ledger.js';
import { formatCredits, parseCredits, toMicros } from '../../credits/money.js';
import { creditAuthorityOf } from '../../credits/authority.js';
import { accountActor } from '../../audit/actor.js';
import { presentBalance, presentEntry, presentPool } from '../../credits/present.js';
import type { IdempotencyStore } from '../../idempotency/store.js';
import { assertCanGrant, assertPlatformAdmin, reachFor } from '../../policies/index.js';
import type { UserAdminService } from '../../users/user-admin.js';
import { clientOf, principalOf } from '../middleware/authenticate.js';
import { cursorOf, limitOf } from '../context.js';
import { defineRoute, defineRoutes, type Payload } from '../routes.js';
import { answerOnce } from '../answer-once.js';

const GRANT_PATH = '/v1/admin/credits/grant';
const ADJUST_PATH = '/v1/admin/credits/adjust';
const REFUND_PATH = '/v1/admin/sessions/:id/refund';

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

/** Credits: the user's balance and ledger, and the admin grant, adjust, session refund, reads and verify. */
export function creditRoutes(deps: { ledger: CreditLedger; idempotency: IdempotencyStore; users: UserAdminService }) {
  const { ledger, idempotency, users } = deps;
  return defineRoutes([
    defineRoute({
      method: 'GET',
      path: '/v1/credits/balance',
      summary: 'Your balance, what running sessions hold, and what is available, in credits.',
      tag: 'credits',
      auth: 'any',
      scope: 'credits:read',
      response: { status: 200, schema: 'CreditBalanceResponse' },
      handler: async (ctx) => {
        return presentBalance(await ledger.balance(principalOf(ctx).userId));
      },
    }),
    defineRoute({
      method: 'GET',
      path: '/v1/credits/transactions',
      summary: 'Your ledger, newest first, cursor-paginated.',
      tag: 'credits',
      auth: 'any',
      scope: 'credits:read',
      query: 'CreditTransactionsQuery',
      response: { status: 200, schema: 'CreditTransactionListResponse' },
      handler: async (ctx) => {
        const page = await ledger.transactions(principalOf(ctx).userId, {
          limit: limitOf(ctx, DEFAULT_PAGE),
          cursor: cursorOf(ctx),
        });
        return { transactions: page.entries.map(presentEntry), next_cursor: page.nextCursor };
      },
    }),
    defineRoute({
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
      idempotent: true,
      handler: async (ctx) => {
        const p = principalOf(ctx);
        const authority = creditAuthorityOf(p);
        const body = ctx.request.body;
        // Everything that can refuse the request runs before the key is claimed; the grant and
        // its stored response then commit together.
        const amount = parseCredits(body.amount, 'amount');
        const user = await users.findUser(p, body.user_id, clientOf(ctx));
        assertCanGrant(p, user);
        return answerOnce<Payload<'CreditGrantResponse'>>(
          ctx,
          idempotency,
          p.userId,
          { method: 'POST', path: GRANT_PATH, body },
          async (ledgerKey, trx) => {
            if (authority.kind === 'tenant') {
              // A tenant admin mints nothing: the credits come out of its tenant's pool (402 when it is short).
              const r = await ledger.transferFromPool(
                {
                  tenantId: authority.tenantId,
                  userId: user.id,
                  amount,
                  reason: body.reason,
                  actor: accountActor(p, true),
                  idempotencyKey: ledgerKey,
                },
                trx,
              );
              return {
                status: 201,
                body: {
                  transaction: presentEntry(r.entry),
                  balance: presentBalance(r.balance),
                  pool: presentPool(r.pool),
                },
                replayed: r.replayed,
              };
            }
            const r = await ledger.grant(
              { userId: user.id, amount, reason: body.reason, actor: accountActor(p, true), idempotencyKey: ledgerKey },
              trx,
            );
            return {
              status: 201,
              body: { transaction: presentEntry(r.entry), balance: presentBalance(r.balance) },
              replayed: r.replayed,
            };
          },
        );
      },
    }),
    defineRoute({
      method: 'POST',
      path: ADJUST_PATH,
      summary:
        "Correct a user's balance (by id or email) by a signed amount (platform admins): never below what its running sessions hold. With an `Idempotency-Key` header a retry within 24 h answers the first adjustment (`Idempotent-Replayed: true`).",
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      // Platform admins only: an adjustment creates or destroys credits outside any tenant's
      // credit pool, which a tenant admin must never do (its credits come from the pool only).
      policy: 'platform_admin',
      body: 'CreditAdjustRequest',
      response: { status: 201, schema: 'CreditAdjustResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN', 'INSUFFICIENT_CREDITS', 'IDEMPOTENCY_KEY_REUSED', 'IDEMPOTENCY_KEY_IN_USE'],
      idempotent: true,
      handler: async (ctx) => {
        const p = principalOf(ctx);
        assertPlatformAdmin(p, 'adjust credits: an adjustment creates or destroys credits outside the tenant pools');
        const body = ctx.request.body;
        // Everything that can refuse the request before the ledger runs before the key is claimed.
        const amount = parseCredits(body.amount, 'amount', { allowNegative: true });
        const user = await users.findUser(p, body.user_id, clientOf(ctx));
        return answerOnce<Payload<'CreditAdjustResponse'>>(
          ctx,
          idempotency,
          p.userId,
          { method: 'POST', path: ADJUST_PATH, body },
          async (ledgerKey, trx) => {
            const r = await ledger.adjust(
              { userId: user.id, amount, reason: body.reason, actor: accountActor(p, true), idempotencyKey: ledgerKey },
              trx,
            );
            return {
              status: 201,
              body: { transaction: presentEntry(r.entry), balance: presentBalance(r.balance) },
              replayed: r.replayed,
            };
          },
        );
      },
    }),
    defineRoute({
      method: 'POST',
      path: REFUND_PATH,
      summary:
        'Refund (part of) what a finished session was charged to its user (platform admins); never more than charged in total over all its refunds. `amount` defaults to everything still refundable. With an `Idempotency-Key` header a retry within 24 h answers the first refund (`Idempotent-Replayed: true`).',
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      // Platform admins only, like adjust: a refund creates credits outside any tenant's credit pool.
      policy: 'platform_admin',
      body: 'CreditRefundRequest',
      response: { status: 201, schema: 'CreditRefundResponse' },
      errors: [
        'NOT_FOUND',
        'FORBIDDEN',
        'INVALID_STATE',
        'REFUND_EXCEEDS_CHARGE',
        'IDEMPOTENCY_KEY_REUSED',
        'IDEMPOTENCY_KEY_IN_USE',
      ],
      idempotent: true,
      handler: async (ctx) => {
        const p = principalOf(ctx);
        assertPlatformAdmin(p, 'refund credits: a refund creates credits outside the tenant pools');
        const sessionId = String(ctx.params.id);
        const body = ctx.request.body;
        const amount = body.amount === undefined ? null : parseCredits(body.amount, 'amount');
        return answerOnce<Payload<'CreditRefundResponse'>>(
          ctx,
          idempotency,
          p.userId,
          { method: 'POST', path: REFUND_PATH, session: sessionId, body },
          async (ledgerKey, trx) => {
            const r = await ledger.refund(
              { sessionId, amount, reason: body.reason, actor: accountActor(p, true), idempotencyKey: ledgerKey },
              trx,
            );
            return {
              status: 201,
              body: {
                user_id: r.entry.userId,
                session_id: sessionId,
                transaction: presentEntry(r.entry),
                balance: presentBalance(r.balance),
                charged: formatCredits(r.charged),
                refunded: formatCredits(r.refunded),
                refundable: formatCredits(r.refundable),
              },
              replayed: r.replayed,
            };
          },
        );
      },
    }),
    defineRoute({
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
        return { user_id: user.id, ...presentBalance(await ledger.balance(user.id, reachFor(p, 'admin'))) };
      },
    }),
    defineRoute({
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
        const page = await ledger.transactions(user.id, {
          limit: limitOf(ctx, DEFAULT_PAGE),
          cursor: cursorOf(ctx),
          reach: reachFor(p, 'admin'),
        });
        return { user_id: user.id, transactions: page.entries.map(presentEntry), next_cursor: page.nextCursor };
      },
    }),
    defineRoute({
      method: 'POST',
      path: '/v1/admin/credits/verify',
      summary: 'Recompute every account from its ledger and list each mismatch (platform admins).',
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'platform_admin',
      response: { status: 200, schema: 'CreditVerifyResponse' },
      errors: ['FORBIDDEN'],
      handler: async () => {
        const mismatches = await ledger.verify();
        return { ok: mismatches.length === 0, mismatches: mismatches.map(presentMismatch) };
      },
    }),
  ]);
}
