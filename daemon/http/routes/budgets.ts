import { BudgetAdmin, presentBudgetStatus, type BudgetInput } from '../../credits/budget-admin.js';
import type { BudgetSubject } from '../../credits/budgets.js';
import { clientOf, principalOf } from '../middleware/authenticate.js';
import { bodyOf, cursorOf, limitOf, type AppContext } from '../context.js';
import { defineRoutes, type RouteSpec } from '../routes.js';

const SUBJECTS: Array<{ subject: BudgetSubject; path: string; what: string }> = [
  { subject: 'api_key', path: '/v1/admin/api-keys/:id/budget', what: "an API key's (administrators who reach the key)" },
  { subject: 'user', path: '/v1/admin/users/:id/budget', what: "a user's, by id or email (administrators who reach the user)" },
  { subject: 'tenant', path: '/v1/admin/tenants/:id/budget', what: "a tenant's, by id or name (platform administrators)" },
];

/**
 * Budgets (docs/credits.md, "Budgets"): a key's owner caps its own keys; administrators
 * cap keys, users and (platform admins) tenants in their reach.
 */
export function budgetRoutes(deps: { budgets: BudgetAdmin }) {
  const { budgets } = deps;
  const setHandler = (subject: BudgetSubject, asAdmin: boolean) => async (ctx: AppContext) => {
    const p = principalOf(ctx);
    const target = await budgets.target(p, subject, String(ctx.params.id), asAdmin);
    ctx.body = { success: true, budget: presentBudgetStatus(await budgets.set(p, target, bodyOf<BudgetInput>(ctx), clientOf(ctx))) };
  };
  const removeHandler = (subject: BudgetSubject, asAdmin: boolean) => async (ctx: AppContext) => {
    const p = principalOf(ctx);
    const target = await budgets.target(p, subject, String(ctx.params.id), asAdmin);
    await budgets.remove(p, target, clientOf(ctx));
    ctx.body = { success: true };
  };
  const admin: RouteSpec[] = SUBJECTS.flatMap(({ subject, path, what }) => [
    {
      method: 'PUT' as const,
      path,
      summary: `Set ${what} budget: at most \`amount\` credits per \`period\`. Replaces the one in place unless a higher role set it.`,
      tag: 'budgets',
      auth: 'any' as const,
      scope: 'admin' as const,
      policy: subject === 'tenant' ? ('platform_admin' as const) : ('administrator' as const),
      body: 'BudgetRequest',
      response: { status: 200, schema: 'BudgetResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN'],
      handler: setHandler(subject, true),
    },
    {
      method: 'DELETE' as const,
      path,
      summary: `Remove ${what} budget.`,
      tag: 'budgets',
      auth: 'any' as const,
      scope: 'admin' as const,
      policy: subject === 'tenant' ? ('platform_admin' as const) : ('administrator' as const),
      response: { status: 200, schema: 'OkResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN'],
      handler: removeHandler(subject, true),
    },
  ]);
  return defineRoutes([
    {
      method: 'GET',
      path: '/v1/budgets',
      summary: "The budgets that apply to you: your user's, your tenant's and your API keys', each with what this period has used.",
      tag: 'budgets',
      auth: 'any',
      scope: 'credits:read',
      response: { status: 200, schema: 'BudgetListResponse' },
      handler: async (ctx) => {
        ctx.body = { success: true, budgets: (await budgets.mine(principalOf(ctx))).map(presentBudgetStatus), next_cursor: null };
      },
    },
    {
      method: 'PUT',
      path: '/v1/api-keys/:id/budget',
      summary: "Cap one of your API keys: at most `amount` credits per `period`. A budget an administrator set can only be changed by one.",
      tag: 'budgets',
      auth: 'bearer',
      body: 'BudgetRequest',
      response: { status: 200, schema: 'BudgetResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN'],
      handler: setHandler('api_key', false),
    },
    {
      method: 'DELETE',
      path: '/v1/api-keys/:id/budget',
      summary: "Remove your API key's budget (unless an administrator set it).",
      tag: 'budgets',
      auth: 'bearer',
      response: { status: 200, schema: 'OkResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN'],
      handler: removeHandler('api_key', false),
    },
    {
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
        const page = await budgets.list(principalOf(ctx), { limit: limitOf(ctx, 50), cursor: cursorOf(ctx), ...(subject ? { subject } : {}) });
        ctx.body = { success: true, budgets: page.budgets.map(presentBudgetStatus), next_cursor: page.next };
      },
    },
    ...admin,
  ]);
}
