import type { Principal } from '../../auth/principal.js';
import { DEFAULT_PAGE, type CreditLedger, type Mismatch, type TenantScoped } from '../../credits/ledger.js';
import { formatCredits, parseCredits, toMicros } from '../../credits/money.js';
import { presentBalance, presentEntry } from '../../credits/present.js';
import { GatewayError } from '../../errors.js';
import type { Queryable } from '../../storage/database.js';
import { hashRequest } from '../../idempotency/key.js';
import type { IdempotencyStore } from '../../idempotency/store.js';
import { adminScope, type UserAdminService } from '../../users/user-admin.js';
import { clientOf, principalOf } from '../middleware/authenticate.js';
import { bodyOf, cursorOf, limitOf } from '../context.js';
import { defineRoutes } from '../routes.js';

const GRANT_PATH = '/v1/admin/credits/grant';

interface GrantBody {
  user_id: string;
  amount: number;
  reason: string;
}

/** How a tenant admin's reads are scoped in SQL too (the user was already found in scope). */
const tenantScopeOf = (p: Principal): TenantScoped => {
  const scope = adminScope(p);
  return scope ? { tenantId: scope.tenantId } : {};
};

/**
 * A mismatch as JSON. Money checks compare micros (shown as decimal credits);
 * `version` and a gap in the chain compare sequence numbers, shown as they are.
 */
export function presentMismatch(m: Mismatch) {
  const seq = m.check === 'version' || (m.check === 'chain' && /sequence/.test(m.message));
  return {
    user_id: m.userId,
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
        'Grant credits to a user (by id or email). With an `Idempotency-Key` header a retry within 24 h answers the first grant (`Idempotent-Replayed: true`).',
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      body: 'CreditGrantRequest',
      response: { status: 201, schema: 'CreditGrantResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN', 'IDEMPOTENCY_KEY_REUSED', 'IDEMPOTENCY_KEY_IN_USE'],
      handler: async (ctx) => {
        const p = principalOf(ctx);
        const body = bodyOf<GrantBody>(ctx);
        // Everything that can refuse the request runs before the key is claimed; the grant and
        // its stored response then commit together.
        const amount = parseCredits(body.amount, 'amount');
        const user = await users.findUser(p, body.user_id, clientOf(ctx));
        const key = ctx.get('Idempotency-Key');
        let ledgerReplayed = false;
        const grant = async (trx?: Queryable) => {
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
      query: 'CreditAdminBalanceQuery',
      response: { status: 200, schema: 'CreditBalanceResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN'],
      handler: async (ctx) => {
        const p = principalOf(ctx);
        const user = await users.findUser(p, String(ctx.query.user_id), clientOf(ctx));
        ctx.body = { success: true, user_id: user.id, ...presentBalance(await ledger.balance(user.id, tenantScopeOf(p))) };
      },
    },
    {
      method: 'GET',
      path: '/v1/admin/credits/transactions',
      summary: "A user's ledger (`user_id`: id or email), newest first, cursor-paginated.",
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      query: 'CreditAdminTransactionsQuery',
      response: { status: 200, schema: 'CreditTransactionListResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN'],
      handler: async (ctx) => {
        const p = principalOf(ctx);
        const user = await users.findUser(p, String(ctx.query.user_id), clientOf(ctx));
        const page = await ledger.transactions(user.id, { limit: limitOf(ctx, DEFAULT_PAGE), cursor: cursorOf(ctx), ...tenantScopeOf(p) });
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
      response: { status: 200, schema: 'CreditVerifyResponse' },
      errors: ['FORBIDDEN'],
      handler: async (ctx) => {
        // The check reads every tenant's accounts: not for tenant admins.
        if (adminScope(principalOf(ctx)) !== null) throw new GatewayError('FORBIDDEN', 'only platform administrators verify the ledger');
        const mismatches = await ledger.verify();
        ctx.body = { success: true, ok: mismatches.length === 0, mismatches: mismatches.map(presentMismatch) };
      },
    },
  ]);
}
