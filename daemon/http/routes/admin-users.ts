import { presentTenant, presentUser } from '../../auth/presenters.js';
import type { ErrorCode } from '../../errors.js';
import type { UserAdminService } from '../../users/user-admin.js';
import {
  presentIssuedKey,
  presentKey,
  presentRolledKey,
  presentTenantPage,
  presentUserPage,
} from '../presenters/users.js';
import { ofUser, reachFor } from '../../policies/index.js';
import { clientOf, principalOf } from '../middleware/authenticate.js';
import { cursorOf, limitOf } from '../context.js';
import { defineRoute, defineRoutes, type RouteContext } from '../routes.js';

/** Users, tenants and keys for administrators: platform admins see all, tenant admins their tenant. */
export function adminUserRoutes(deps: { users: UserAdminService }) {
  const { users } = deps;
  /** An action on one user (`:id`: id or email) that answers the user as it is now. */
  const userAction = <B extends 'SetTierRequest' = never>(
    path: string,
    summary: string,
    fn: (ctx: RouteContext<B>) => ReturnType<UserAdminService['unlock']>,
    options: { body?: B; errors?: ErrorCode[] } = {},
  ) =>
    defineRoute({
      method: 'POST',
      path,
      summary,
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      ...(options.body ? { body: options.body } : {}),
      response: { status: 200, schema: 'UserResponse' },
      errors: options.errors ?? ['NOT_FOUND', 'FORBIDDEN', 'INVALID_STATE'],
      handler: async (ctx: RouteContext<B>) => ({ user: presentUser(await fn(ctx)) }),
    });
  return defineRoutes([
    defineRoute({
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
        const user = await users.createUser(principalOf(ctx), ctx.request.body, clientOf(ctx));
        ctx.status = 201;
        return { user: presentUser(user) };
      },
    }),
    defineRoute({
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
        return presentUserPage(
          await users.listUsers(principalOf(ctx), { limit: limitOf(ctx, 50), cursor: cursorOf(ctx), email }),
        );
      },
    }),
    defineRoute({
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
        return { user: presentUser(await users.findUser(principalOf(ctx), String(ctx.params.id), clientOf(ctx))) };
      },
    }),
    userAction('/v1/admin/users/:id/suspend', 'Suspend a user: every token stops working at once.', (ctx) =>
      users.suspend(principalOf(ctx), String(ctx.params.id), clientOf(ctx)),
    ),
    userAction('/v1/admin/users/:id/activate', 'Reactivate a suspended user.', (ctx) =>
      users.activate(principalOf(ctx), String(ctx.params.id), clientOf(ctx)),
    ),
    userAction(
      '/v1/admin/users/:id/tier',
      'Set the tier of a user.',
      (ctx) => users.setTier(principalOf(ctx), String(ctx.params.id), ctx.request.body.tier, clientOf(ctx)),
      { body: 'SetTierRequest' },
    ),
    userAction('/v1/admin/users/:id/reset-mfa', 'Turn off MFA of a user who lost their authenticator.', (ctx) =>
      users.resetMfa(principalOf(ctx), String(ctx.params.id), clientOf(ctx)),
    ),
    userAction(
      '/v1/admin/users/:id/unlock',
      "Lift the sign-in back-off of a user's email after failed sign-ins from elsewhere; addresses that failed themselves stay throttled.",
      (ctx) => users.unlock(principalOf(ctx), String(ctx.params.id), clientOf(ctx)),
      { errors: ['NOT_FOUND', 'FORBIDDEN', 'UNAVAILABLE'] },
    ),
    defineRoute({
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
        return {
          tenant: presentTenant(await users.createTenant(principalOf(ctx), ctx.request.body.name, clientOf(ctx))),
        };
      },
    }),
    defineRoute({
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
        return presentTenantPage(
          await users.listTenants(principalOf(ctx), { limit: limitOf(ctx, 50), cursor: cursorOf(ctx) }),
        );
      },
    }),
    defineRoute({
      method: 'POST',
      path: '/v1/admin/api-keys',
      summary: 'Create an API key for a user (by id or email); the key is in this response only.',
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      body: 'AdminApiKeyCreateRequest',
      response: { status: 201, schema: 'ApiKeyCreatedResponse' },
      errors: ['NOT_FOUND', 'INSUFFICIENT_SCOPE', 'FORBIDDEN'],
      handler: async (ctx) => {
        const p = principalOf(ctx);
        const b = ctx.request.body;
        const owner = await users.findUser(p, b.user_id, clientOf(ctx));
        ctx.status = 201;
        return presentIssuedKey(await users.createApiKey(p, owner, b, clientOf(ctx)));
      },
    }),
    defineRoute({
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
        const who =
          typeof ctx.query.user_id === 'string' ? await users.findUser(p, ctx.query.user_id, clientOf(ctx)) : null;
        return {
          api_keys: (await users.listApiKeys(who ? ofUser(who.id) : reachFor(p, 'admin'), limitOf(ctx, 50))).map(
            presentKey,
          ),
        };
      },
    }),
    defineRoute({
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
        return {
          api_key: presentKey(
            await users.updateApiKey(principalOf(ctx), String(ctx.params.id), ctx.request.body, true, clientOf(ctx)),
          ),
        };
      },
    }),
    defineRoute({
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
        return presentRolledKey(
          await users.rollApiKey(principalOf(ctx), String(ctx.params.id), ctx.request.body ?? {}, true, clientOf(ctx)),
        );
      },
    }),
    defineRoute({
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
        return {
          api_key: presentKey(await users.revokeApiKey(principalOf(ctx), String(ctx.params.id), true, clientOf(ctx))),
        };
      },
    }),
  ]);
}
