import { assertIdempotencyKey, hashRequest } from '../../idempotency/key.js';
import type { SessionService } from '../../sessions/session-service.js';
import type { UserAdminService } from '../../users/user-admin.js';
import { cursorOf, limitOf, type AppContext } from '../context.js';
import { clientOf, principalOf } from '../middleware/authenticate.js';
import { defineRoute, defineRoutes } from '../routes.js';
import type { PublicUrl } from '../presenters/public-url.js';
import { presentQuote, sessionPresenters } from '../presenters/sessions.js';

const statusOf = (ctx: AppContext): string | undefined =>
  typeof ctx.query.status === 'string' ? ctx.query.status : undefined;

/** Execute and quote, the user's sessions, and the admin's view of them. */
export function sessionRoutes(deps: { sessions: SessionService; users: UserAdminService; publicUrl: PublicUrl }) {
  const { sessions, users } = deps;
  const present = sessionPresenters(deps.publicUrl);
  return defineRoutes([
    defineRoute({
      method: 'POST',
      path: '/v1/agents/execute',
      summary:
        'Start an agent run: validates, reserves credits and a session slot in one transaction, starts the agent.',
      tag: 'agents',
      auth: 'any',
      scope: 'agents:execute',
      body: 'ExecuteRequest',
      response: { status: 200, schema: 'ExecuteResponse' },
      errors: [
        'INSUFFICIENT_CREDITS',
        'BUDGET_EXCEEDED',
        'CONCURRENCY_LIMIT',
        'IDEMPOTENCY_KEY_REUSED',
        'IDEMPOTENCY_KEY_IN_USE',
        'UNAVAILABLE',
      ],
      idempotent: true,
      handler: async (ctx) => {
        const p = principalOf(ctx);
        const input = ctx.request.body;
        const key = ctx.get('Idempotency-Key');
        if (key) assertIdempotencyKey(key);
        const r = await sessions.execute(
          p,
          input,
          clientOf(ctx),
          key ? { key, requestHash: hashRequest({ route: 'execute', body: input }) } : undefined,
        );
        if (r.replayed) ctx.set('Idempotent-Replayed', 'true');
        return r.body;
      },
    }),
    defineRoute({
      method: 'POST',
      path: '/v1/agents/quote',
      summary: 'What execute would decide now, and why (cost estimate, reservation, admission); no side effects.',
      tag: 'agents',
      auth: 'any',
      scope: 'agents:execute',
      body: 'ExecuteRequest',
      response: { status: 200, schema: 'QuoteResponse' },
      handler: async (ctx) => {
        return presentQuote(await sessions.quote(principalOf(ctx), ctx.request.body));
      },
    }),
    defineRoute({
      method: 'GET',
      path: '/v1/sessions',
      summary: "Your sessions, newest first (a tenant admin's access token or `admin`-scoped key: the tenant's).",
      tag: 'sessions',
      auth: 'any',
      scope: 'sessions:read',
      query: 'SessionListQuery',
      response: { status: 200, schema: 'SessionListResponse' },
      handler: async (ctx) => {
        return present.page(
          await sessions.list(principalOf(ctx), {
            limit: limitOf(ctx, 20),
            cursor: cursorOf(ctx),
            status: statusOf(ctx),
          }),
        );
      },
    }),
    defineRoute({
      method: 'GET',
      path: '/v1/sessions/:id',
      summary:
        'One session: status, phase, cost so far, final cost, timings, end reason, and whether its agent ran sandboxed.',
      tag: 'sessions',
      auth: 'any',
      scope: 'sessions:read',
      response: { status: 200, schema: 'SessionResponse' },
      errors: ['NOT_FOUND'],
      handler: async (ctx) => {
        return { session: present.session(await sessions.get(principalOf(ctx), String(ctx.params.id))) };
      },
    }),
    defineRoute({
      method: 'GET',
      path: '/v1/sessions/:id/events',
      summary: 'Stored events of a session after a seq, for replay.',
      tag: 'sessions',
      auth: 'any',
      scope: 'sessions:read',
      query: 'SessionEventsQuery',
      response: { status: 200, schema: 'SessionEventsResponse' },
      errors: ['NOT_FOUND'],
      handler: async (ctx) => {
        return present.events(
          await sessions.events(
            principalOf(ctx),
            String(ctx.params.id),
            Number(ctx.query.after ?? 0),
            limitOf(ctx, 500),
          ),
        );
      },
    }),
    defineRoute({
      method: 'POST',
      path: '/v1/sessions/:id/cancel',
      summary: 'Stop the agent; charge what it used and release the rest.',
      tag: 'sessions',
      auth: 'any',
      scope: 'agents:execute',
      response: { status: 200, schema: 'SessionResponse' },
      errors: ['NOT_FOUND', 'INVALID_STATE'],
      handler: async (ctx) => {
        return {
          session: present.session(await sessions.cancel(principalOf(ctx), String(ctx.params.id), clientOf(ctx))),
        };
      },
    }),
    defineRoute({
      method: 'GET',
      path: '/v1/admin/sessions',
      summary: 'Sessions of everyone in scope; filter by user (id or email) and status.',
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      query: 'SessionListQuery',
      response: { status: 200, schema: 'SessionListResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN'],
      handler: async (ctx) => {
        const p = principalOf(ctx);
        const who =
          typeof ctx.query.user_id === 'string' ? await users.findUser(p, ctx.query.user_id, clientOf(ctx)) : null;
        const page = {
          limit: limitOf(ctx, 50),
          cursor: cursorOf(ctx),
          status: statusOf(ctx),
          ...(who ? { userId: who.id } : {}),
        };
        return present.page(await sessions.list(p, page, true));
      },
    }),
    defineRoute({
      method: 'POST',
      path: '/v1/admin/sessions/:id/cancel',
      summary: 'Cancel any session in scope.',
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      response: { status: 200, schema: 'SessionResponse' },
      errors: ['NOT_FOUND', 'INVALID_STATE', 'FORBIDDEN'],
      handler: async (ctx) => {
        const p = principalOf(ctx);
        return { session: present.session(await sessions.cancel(p, String(ctx.params.id), clientOf(ctx), true)) };
      },
    }),
  ]);
}
