import type { BudgetAdmin } from '../../credits/budget-admin.js';
import { presentBudgetStatus } from '../../credits/budget-present.js';
import type { BudgetSubject } from '../../credits/budgets.js';
import { clientOf, principalOf } from '../middleware/authenticate.js';
import { cursorOf, limitOf } from '../context.js';
import { defineRoute, defineRoutes, type RouteContext, type RouteSpec } from '../routes.js';

const SUBJECTS: Array<{ subject: BudgetSubject; path: string; what: string }> = [
  {
    subject: 'api_key',
    path: '/v1/admin/api-keys/:id/budget',
    what: "an API key's (administrators who reach the key)",
  },
  {
    subject: 'user',
    path: '/v1/admin/users/:id/budget',
    what: "a user's, by id or email (administrators who reach the user)",
  },
  {
    subject: 'tenant',
    path: '/v1/admin/tenants/:id/budget',
    what: "a tenant's, by id or name (platform administrators)",
  },
];

/**
 * Budgets (docs/credits.md, "Budgets"): a key's owner caps its own keys; administrators
 * cap keys, users and (platform admins) tenants in their reach.
 */
export function budgetRoutes(deps: { budgets: BudgetAdmin }) {
  const { budgets } = deps;
  const setHandler = (subject: BudgetSubject, asAdmin: boolean) => async (ctx: RouteContext<'BudgetRequest'>) => {
    const p = principalOf(ctx);
    const target = await budgets.target(p, subject, String(ctx.params.id), asAdmin);
    return { budget: presentBudgetStatus(await budgets.set(p, target, ctx.request.body, clientOf(ctx))) };
  };
  const removeHandler = (subject: BudgetSubject, asAdmin: boolean) => async (ctx: RouteContext) => {
    const p = principalOf(ctx);
    const target = await budgets.target(p, subject, String(ctx.params.id), asAdmin);
    await budgets.remove(p, target, clientOf(ctx));
    return {};
  };
  const admin: RouteSpec[] = SUBJECTS.flatMap(({ subject, path, what }) => [
    defineRoute({
      method: 'PUT',
      path,
      summary: `Set ${what} budget: at most \`amount\` credits per \`period\`. Replaces the one in place unless a higher role set it.`,
      tag: 'budgets',
      auth: 'any',
      scope: 'admin',
      policy: subject === 'tenant' ? 'platform_admin' : 'administrator',
      body: 'BudgetRequest',
      response: { status: 200, schema: 'BudgetResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN'],
      handler: setHandler(subject, true),
    }),
    defineRoute({
      method: 'DELETE',
      path,
      summary: `Remove ${what} budget.`,
      tag: 'budgets',
      auth: 'any',
      scope: 'admin',
      policy: subject === 'tenant' ? 'platform_admin' : 'administrator',
      response: { status: 200, schema: 'OkResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN'],
      handler: removeHandler(subject, true),
    }),
  ]);
  return defineRoutes([
    defineRoute({
      method: 'GET',
      path: '/v1/budgets',
      summary:
        "The budgets that apply to you: your user's, your tenant's and your API keys', each with what this period has used.",
      tag: 'budgets',
      auth: 'any',
      scope: 'credits:read',
      response: { status: 200, schema: 'BudgetListResponse' },
      handler: async (ctx) => {
        return { budgets: (await budgets.mine(principalOf(ctx))).map(presentBudgetStatus), next_cursor: null };
      },
    }),
    defineRoute({
      method: 'PUT',
      path: '/v1/api-keys/:id/budget',
      summary:
        'Cap one of your API keys: at most `amount` credits per `period`. A budget an administrator set can only be changed by one.',
      tag: 'budgets',
      auth: 'bearer',
      body: 'BudgetRequest',
      response: { status: 200, schema: 'BudgetResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN'],
      handler: setHandler('api_key', false),
    }),
    defineRoute({
      method: 'DELETE',
      path: '/v1/api-keys/:id/budget',
      summary: "Remove your API key's budget (unless an administrator set it).",
      tag: 'budgets',
      auth: 'bearer',
      response: { status: 200, schema: 'OkResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN'],
      handler: removeHandler('api_key', false),
    }),
    defineRoute({
      method: 'GET',
      path: '/v1/admin/budgets',
      summary: 'Every budget in your reach (tenant admins: their tenant), with its current use; `subject` filters.',
      tag: 'budgets',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      query: 'BudgetListQuery',
      response: { status: 200, schema: 'BudgetListResponse' },
      errors: ['FORBIDDEN'],
      handler: async (ctx) => {
        const subject = typeof ctx.query.subject === 'string' ? ctx.query.subject : undefined;
        const page = await budgets.list(principalOf(ctx), {
          limit: limitOf(ctx, 50),
          cursor: cursorOf(ctx),
          ...(subject ? { subject } : {}),
        });
        return { budgets: page.budgets.map(presentBudgetStatus), next_cursor: page.next };
      },
    }),
    ...admin,
  ]);
}
