import { accountActor } from '../../audit/actor.js';
import type { AuditLogger } from '../../audit/types.js';
import { creditAuthorityOf } from '../../credits/authority.js';
import { DEFAULT_PAGE, MAX_PAGE, type CreditLedger } from '../../credits/ledger.js';
import { parseCredits } from '../../credits/money.js';
import { presentPool, presentPoolEntry } from '../../credits/present.js';
import { GatewayError, notFound } from '../../errors.js';
import { isId } from '../../ids.js';
import type { IdempotencyStore } from '../../idempotency/store.js';
import { clientOf, principalOf } from '../middleware/authenticate.js';
import { cursorOf, limitOf } from '../context.js';
import { defineRoute, defineRoutes, type Payload } from '../routes.js';
import { tenantProbe } from '../tenant-probe.js';
import { answerOnce } from '../answer-once.js';

/**
 * Tenant credit pools (docs/credits.md): the platform grants into a tenant's
 * pool; the tenant's admins read it (and draw on it with POST
 * /v1/admin/credits/grant). Another tenant's pool answers 404 to a tenant
 * admin exactly like a tenant that does not exist, and the probe is audited.
 */
export function creditPoolRoutes(deps: { ledger: CreditLedger; idempotency: IdempotencyStore; audit: AuditLogger }) {
  const { ledger, idempotency, audit } = deps;

  const probe = tenantProbe(audit);

  return defineRoutes([
    defineRoute({
      method: 'POST',
      path: '/v1/admin/tenants/:id/credits/grant',
      summary:
        "Grant credits into a tenant's credit pool (platform admins), from which its tenant admins grant to their members. With an `Idempotency-Key` header a retry within 24 h answers the first grant (`Idempotent-Replayed: true`).",
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      body: 'TenantCreditGrantRequest',
      response: { status: 201, schema: 'TenantCreditGrantResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN', 'IDEMPOTENCY_KEY_REUSED', 'IDEMPOTENCY_KEY_IN_USE'],
      idempotent: true,
      handler: async (ctx) => {
        const p = principalOf(ctx);
        const authority = creditAuthorityOf(p);
        const tenantId = String(ctx.params.id);
        if (authority.kind === 'tenant') {
          if (authority.tenantId !== tenantId) return probe(p, tenantId, clientOf(ctx));
          throw new GatewayError('FORBIDDEN', "only platform administrators grant credits into a tenant's pool");
        }
        const body = ctx.request.body;
        // Everything that can refuse the request runs before the key is claimed.
        const amount = parseCredits(body.amount, 'amount');
        if (!(await ledger.pool(tenantId))) throw notFound('tenant');
        return answerOnce<Payload<'TenantCreditGrantResponse'>>(
          ctx,
          idempotency,
          p.userId,
          { method: 'POST', path: `/v1/admin/tenants/${tenantId}/credits/grant`, body },
          async (ledgerKey, trx) => {
            const r = await ledger.grantPool(
              { tenantId, amount, reason: body.reason, actor: accountActor(p, true), idempotencyKey: ledgerKey },
              trx,
            );
            return {
              status: 201,
              body: { transaction: presentPoolEntry(r.entry), pool: presentPool(r.pool) },
              replayed: r.replayed,
            };
          },
        );
      },
    }),
    defineRoute({
      method: 'GET',
      path: '/v1/admin/tenants/:id/credits',
      summary:
        "A tenant's credit pool and its ledger, newest first, cursor-paginated (platform admins: any tenant; tenant admins: their own).",
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      query: 'CreditTransactionsQuery',
      response: { status: 200, schema: 'TenantCreditPoolResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN'],
      handler: async (ctx) => {
        const p = principalOf(ctx);
        const authority = creditAuthorityOf(p);
        const tenantId = String(ctx.params.id);
        if (authority.kind === 'tenant' && authority.tenantId !== tenantId) return probe(p, tenantId, clientOf(ctx));
        const pool = isId(tenantId, 'ten') ? await ledger.pool(tenantId) : undefined;
        if (!pool) throw notFound('tenant');
        const page = await ledger.poolEntries(tenantId, { limit: limitOf(ctx, DEFAULT_PAGE), cursor: cursorOf(ctx) });
        return { pool: presentPool(pool), entries: page.entries.map(presentPoolEntry), next_cursor: page.nextCursor };
      },
    }),
    defineRoute({
      method: 'GET',
      path: '/v1/admin/credits/pools',
      summary: 'Tenant credit pools by tenant id, cursor-paginated (a tenant admin sees its own).',
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      query: 'CreditTransactionsQuery',
      response: { status: 200, schema: 'CreditPoolListResponse' },
      errors: ['FORBIDDEN'],
      handler: async (ctx) => {
        const authority = creditAuthorityOf(principalOf(ctx));
        const r = await ledger.pools({
          limit: Math.min(limitOf(ctx, MAX_PAGE), MAX_PAGE),
          after: cursorOf(ctx),
          ...(authority.kind === 'tenant' ? { tenantId: authority.tenantId } : {}),
        });
        return { pools: r.pools.map(presentPool), next_cursor: r.next };
      },
    }),
  ]);
}
