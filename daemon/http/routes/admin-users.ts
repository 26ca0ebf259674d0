import type { Tier } from '../../auth/principal.js';
import { presentUser } from '../../auth/presenters.js';
import type { CreateKeyInput, CreateUserInput, RollKeyInput, UpdateKeyInput, UserAdminService } from '../../users/user-admin.js';
import { ofUser, reachFor } from '../../policies/index.js';
import { clientOf, principalOf } from '../middleware/authenticate.js';
import { bodyOf, cursorOf, limitOf, type AppContext } from '../context.js';
import { defineRoutes } from '../routes.js';

/** Users, tenants and keys for administrators: platform admins see all, tenant admins their tenant. */
export function adminUserRoutes(deps: { users: UserAdminService }) {
  const { users } = deps;
  const userAction = (path: string, summary: string, fn: (ctx: AppContext) => Promise<unknown>, body?: string) => ({
    method: 'POST' as const,
    path,
    summary,
    tag: 'admin',
    auth: 'any' as const,
    scope: 'admin' as const,
    policy: 'administrator' as const,
    ...(body ? { body } : {}),
    response: { status: 200, schema: 'UserResponse' },
    errors: ['NOT_FOUND', 'FORBIDDEN', 'INVALID_STATE'],
    handler: async (ctx: AppContext) => {
      ctx.body = { success: true, user: await fn(ctx) };
    },
  });
  return defineRoutes([
    {
      method: 'POST',
      path: '/v1/admin/users',
      summary: 'Create a user (tenant admins: in their tenant).',
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      body: 'AdminUserCreateRequest',
      response: { status: 201, schema: 'UserResponse' },
      errors: ['ALREADY_EXISTS', 'NOT_FOUND', 'FORBIDDEN'],
      handler: async (ctx) => {
        const user = await users.createUser(principalOf(ctx), bodyOf<CreateUserInput>(ctx), clientOf(ctx));
        ctx.status = 201;
        ctx.body = { success: true, user: presentUser(user) };
      },
    },
    {
      method: 'GET',
      path: '/v1/admin/users',
      summary: 'List users, by id, cursor-paginated; `email` finds one.',
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      query: 'ListQuery',
      response: { status: 200, schema: 'UserListResponse' },
      errors: ['FORBIDDEN'],
      handler: async (ctx) => {
        const email = typeof ctx.query.email === 'string' ? ctx.query.email : undefined;
        ctx.body = { success: true, ...(await users.listUsers(principalOf(ctx), { limit: limitOf(ctx, 50), cursor: cursorOf(ctx), email })) };
      },
    },
    {
      method: 'GET',
      path: '/v1/admin/users/:id',
      summary: 'One user, by id or email.',
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      response: { status: 200, schema: 'UserResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN'],
      handler: async (ctx) => {
        ctx.body = { success: true, user: presentUser(await users.findUser(principalOf(ctx), String(ctx.params.id), clientOf(ctx))) };
      },
    },
    userAction('/v1/admin/users/:id/suspend', 'Suspend a user: every token stops working at once.', (ctx) =>
      users.suspend(principalOf(ctx), String(ctx.params.id), clientOf(ctx)),
    ),
    userAction('/v1/admin/users/:id/activate', 'Reactivate a suspended user.', (ctx) => users.activate(principalOf(ctx), String(ctx.params.id), clientOf(ctx))),
    userAction(
      '/v1/admin/users/:id/tier',
      'Set the tier of a user.',
      (ctx) => users.setTier(principalOf(ctx), String(ctx.params.id), (bodyOf<{ tier: Tier }>(ctx)).tier, clientOf(ctx)),
      'SetTierRequest',
    ),
    userAction('/v1/admin/users/:id/reset-mfa', 'Turn off MFA of a user who lost their authenticator.', (ctx) =>
      users.resetMfa(principalOf(ctx), String(ctx.params.id), clientOf(ctx)),
    ),
    {
      ...userAction(
        '/v1/admin/users/:id/unlock',
        "Lift the sign-in back-off of a user's email after failed sign-ins from elsewhere; addresses that failed themselves stay throttled.",
        (ctx) => users.unlock(principalOf(ctx), String(ctx.params.id), clientOf(ctx)),
      ),
      errors: ['NOT_FOUND', 'FORBIDDEN', 'UNAVAILABLE'],
    },
    {
      method: 'POST',
      path: '/v1/admin/tenants',
      summary: 'Create a tenant (platform admins).',
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'platform_admin',
      body: 'TenantCreateRequest',
      response: { status: 201, schema: 'TenantResponse' },
      errors: ['ALREADY_EXISTS', 'FORBIDDEN'],
      handler: async (ctx) => {
        ctx.status = 201;
        ctx.body = { success: true, tenant: await users.createTenant(principalOf(ctx), (bodyOf<{ name: string }>(ctx)).name, clientOf(ctx)) };
      },
    },
    {
      method: 'GET',
      path: '/v1/admin/tenants',
      summary: 'List tenants (a tenant admin sees its own).',
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      query: 'ListQuery',
      response: { status: 200, schema: 'TenantListResponse' },
      errors: ['FORBIDDEN'],
      handler: async (ctx) => {
        ctx.body = { success: true, ...(await users.listTenants(principalOf(ctx), { limit: limitOf(ctx, 50), cursor: cursorOf(ctx) })) };
      },
    },
    {
      method: 'POST',
      path: '/v1/admin/api-keys',
      summary: "Create an API key for a user (by id or email); the key is in this response only.",
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      body: 'AdminApiKeyCreateRequest',
      response: { status: 201, schema: 'ApiKeyCreatedResponse' },
      errors: ['NOT_FOUND', 'INSUFFICIENT_SCOPE', 'FORBIDDEN'],
      handler: async (ctx) => {
        const p = principalOf(ctx);
        const b = bodyOf<CreateKeyInput & { user_id: string }>(ctx);
        const owner = await users.findUser(p, b.user_id, clientOf(ctx));
        ctx.status = 201;
        ctx.body = { success: true, ...(await users.createApiKey(p, owner, b, clientOf(ctx))) };
      },
    },
    {
      method: 'GET',
      path: '/v1/admin/api-keys',
      summary: 'List API keys, of one user (`user_id`: id or email) or of everyone in scope.',
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      query: 'ListQuery',
      response: { status: 200, schema: 'ApiKeyListResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN'],
      handler: async (ctx) => {
        const p = principalOf(ctx);
        const who = typeof ctx.query.user_id === 'string' ? await users.findUser(p, ctx.query.user_id, clientOf(ctx)) : null;
        ctx.body = { success: true, api_keys: await users.listApiKeys(who ? ofUser(who.id) : reachFor(p, 'admin'), limitOf(ctx, 50)) };
      },
    },
    {
      method: 'PATCH',
      path: '/v1/admin/api-keys/:id',
      summary: "Change an API key's name, scopes, rate limit or expiry (any key in scope).",
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      body: 'ApiKeyUpdateRequest',
      response: { status: 200, schema: 'ApiKeyResponse' },
      errors: ['NOT_FOUND', 'INVALID_STATE', 'INSUFFICIENT_SCOPE', 'FORBIDDEN'],
      handler: async (ctx) => {
        ctx.body = { success: true, api_key: await users.updateApiKey(principalOf(ctx), String(ctx.params.id), bodyOf<UpdateKeyInput>(ctx), true, clientOf(ctx)) };
      },
    },
    {
      method: 'POST',
      path: '/v1/admin/api-keys/:id/roll',
      summary: 'Give an API key in scope a new secret (same id); the old secret works for a grace period.',
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      body: 'ApiKeyRollRequest',
      bodyOptional: true,
      response: { status: 200, schema: 'ApiKeyRolledResponse' },
      errors: ['NOT_FOUND', 'INVALID_STATE', 'FORBIDDEN'],
      handler: async (ctx) => {
        ctx.body = { success: true, ...(await users.rollApiKey(principalOf(ctx), String(ctx.params.id), bodyOf<RollKeyInput | undefined>(ctx) ?? {}, true, clientOf(ctx))) };
      },
    },
    {
      method: 'DELETE',
      path: '/v1/admin/api-keys/:id',
      summary: 'Revoke any API key in scope.',
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      response: { status: 200, schema: 'ApiKeyResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN'],
      handler: async (ctx) => {
        ctx.body = { success: true, api_key: await users.revokeApiKey(principalOf(ctx), String(ctx.params.id), true, clientOf(ctx)) };
      },
    },
  ]);
}
