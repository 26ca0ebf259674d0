import { reachFor } from '../../policies/index.js';
import type { UserAdminService } from '../../users/user-admin.js';
import { presentIssuedKey, presentKey, presentRolledKey } from '../presenters/users.js';
import { clientOf, principalOf } from '../middleware/authenticate.js';
import { defineRoute, defineRoutes } from '../routes.js';

/** A user's own API keys (bearer only, so a leaked key cannot mint more keys). */
export function apiKeyRoutes(deps: { users: UserAdminService }) {
  const { users } = deps;
  return defineRoutes([
    defineRoute({
      method: 'GET',
      path: '/v1/api-keys',
      summary: 'List your API keys (never the keys themselves).',
      tag: 'api-keys',
      auth: 'bearer',
      response: { status: 200, schema: 'ApiKeyListResponse' },
      handler: async (ctx) => {
        return { api_keys: (await users.listApiKeys(reachFor(principalOf(ctx), 'self'))).map(presentKey) };
      },
    }),
    defineRoute({
      method: 'POST',
      path: '/v1/api-keys',
      summary: 'Create an API key; the key is in this response only.',
      tag: 'api-keys',
      auth: 'bearer',
      body: 'ApiKeyCreateRequest',
      response: { status: 201, schema: 'ApiKeyCreatedResponse' },
      errors: ['INSUFFICIENT_SCOPE', 'FORBIDDEN'],
      handler: async (ctx) => {
        const p = principalOf(ctx);
        const owner = await users.ownUser(p);
        ctx.status = 201;
        return presentIssuedKey(await users.createApiKey(p, owner, ctx.request.body, clientOf(ctx)));
      },
    }),
    defineRoute({
      method: 'PATCH',
      path: '/v1/api-keys/:id',
      summary: "Change one of your API keys' name, scopes, rate limit or expiry.",
      tag: 'api-keys',
      auth: 'bearer',
      body: 'ApiKeyUpdateRequest',
      response: { status: 200, schema: 'ApiKeyResponse' },
      errors: ['NOT_FOUND', 'INVALID_STATE', 'INSUFFICIENT_SCOPE', 'FORBIDDEN'],
      handler: async (ctx) => {
        return {
          api_key: presentKey(
            await users.updateApiKey(principalOf(ctx), String(ctx.params.id), ctx.request.body, false, clientOf(ctx)),
          ),
        };
      },
    }),
    defineRoute({
      method: 'POST',
      path: '/v1/api-keys/:id/roll',
      summary: 'Give one of your API keys a new secret (same id); the old secret works for a grace period.',
      tag: 'api-keys',
      auth: 'bearer',
      body: 'ApiKeyRollRequest',
      bodyOptional: true,
      response: { status: 200, schema: 'ApiKeyRolledResponse' },
      errors: ['NOT_FOUND', 'INVALID_STATE', 'FORBIDDEN'],
      handler: async (ctx) => {
        return presentRolledKey(
          await users.rollApiKey(principalOf(ctx), String(ctx.params.id), ctx.request.body ?? {}, false, clientOf(ctx)),
        );
      },
    }),
    defineRoute({
      method: 'DELETE',
      path: '/v1/api-keys/:id',
      summary: 'Revoke one of your API keys.',
      tag: 'api-keys',
      auth: 'bearer',
      response: { status: 200, schema: 'ApiKeyResponse' },
      errors: ['NOT_FOUND', 'FORBIDDEN'],
      handler: async (ctx) => {
        return {
          api_key: presentKey(await users.revokeApiKey(principalOf(ctx), String(ctx.params.id), false, clientOf(ctx))),
        };
      },
    }),
  ]);
}
