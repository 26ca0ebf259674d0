import { WEBHOOK_EVENTS, WEBHOOK_EVENT_TYPES } from '../../webhooks/events.js';
import { endpointReach, type WebhookEndpoints } from '../../webhooks/endpoints.js';
import type { WebhookService } from '../../webhooks/service.js';
import { ofUser, reachFor } from '../../policies/index.js';
import type { UserAdminService } from '../../users/user-admin.js';
import { clientOf, principalOf } from '../middleware/authenticate.js';
import { cursorOf, limitOf, type AppContext } from '../context.js';
import {
  presentDelivery,
  presentDeliveryPage,
  presentEndpoint,
  presentEndpointPage,
  presentEndpointWithSecret,
} from '../presenters/webhooks.js';
import { defineRoute, defineRoutes } from '../routes.js';

const ENDPOINT = '/v1/webhooks/endpoints/:id';

/**
 * Webhooks (docs/webhooks.md): registered endpoints with their own secrets and
 * event filters, the delivery log, resend and ping; and the per-user secret of
 * an execute's one-off `webhook_url`.
 */
export function webhookRoutes(deps: {
  webhooks: WebhookService;
  endpoints: WebhookEndpoints;
  users: UserAdminService;
}) {
  const { endpoints } = deps;
  const id = (ctx: AppContext) => String(ctx.params.id);
  return defineRoutes([
    defineRoute({
      method: 'GET',
      path: '/v1/webhooks/secret',
      summary:
        "Your signing secret for an execute's one-off webhook_url (Standard Webhooks, whsec_...): verify the webhook-signature header with it.",
      tag: 'webhooks',
      auth: 'bearer',
      response: { status: 200, schema: 'WebhookSecretResponse' },
      errors: ['FORBIDDEN'],
      handler: (ctx) => {
        return { secret: deps.webhooks.signingSecretFor(principalOf(ctx).userId) };
      },
    }),
    defineRoute({
      method: 'GET',
      path: '/v1/webhooks/event-types',
      summary: 'Every event type an endpoint can subscribe to, what it means, and the schema of its message.',
      tag: 'webhooks',
      auth: 'any',
      response: { status: 200, schema: 'WebhookEventTypesResponse' },
      handler: () => {
        return {
          event_types: WEBHOOK_EVENT_TYPES.map((type) => ({
            type,
            description: WEBHOOK_EVENTS[type].description,
            schema: WEBHOOK_EVENTS[type].schema,
          })),
        };
      },
    }),
    defineRoute({
      method: 'POST',
      path: '/v1/webhooks/endpoints',
      summary:
        'Register a webhook endpoint: its URL and the event types it wants. Its signing secret is in this response only.',
      tag: 'webhooks',
      auth: 'any',
      scope: 'keys:manage',
      body: 'WebhookEndpointCreateRequest',
      response: { status: 201, schema: 'WebhookEndpointCreatedResponse' },
      errors: ['INVALID_STATE'],
      handler: async (ctx) => {
        ctx.status = 201;
        return presentEndpointWithSecret(await endpoints.create(principalOf(ctx), ctx.request.body, clientOf(ctx)));
      },
    }),
    defineRoute({
      method: 'GET',
      path: '/v1/webhooks/endpoints',
      summary: 'Your webhook endpoints, by id, cursor-paginated.',
      tag: 'webhooks',
      auth: 'any',
      scope: 'keys:manage',
      query: 'ListQuery',
      response: { status: 200, schema: 'WebhookEndpointListResponse' },
      handler: async (ctx) => {
        const page = await endpoints.list(reachFor(principalOf(ctx), 'self'), {
          limit: limitOf(ctx, 50),
          cursor: cursorOf(ctx),
        });
        return presentEndpointPage(page);
      },
    }),
    defineRoute({
      method: 'GET',
      path: ENDPOINT,
      summary: 'One webhook endpoint (yours; an administrator: any in reach).',
      tag: 'webhooks',
      auth: 'any',
      scope: 'keys:manage',
      response: { status: 200, schema: 'WebhookEndpointResponse' },
      errors: ['NOT_FOUND'],
      handler: async (ctx) => {
        return { endpoint: presentEndpoint(await endpoints.get(principalOf(ctx), id(ctx))) };
      },
    }),
    defineRoute({
      method: 'PATCH',
      path: ENDPOINT,
      summary:
        "Change an endpoint's URL, event types, description, low-balance threshold or enabled state (true re-enables one the gateway disabled).",
      tag: 'webhooks',
      auth: 'any',
      scope: 'keys:manage',
      body: 'WebhookEndpointUpdateRequest',
      response: { status: 200, schema: 'WebhookEndpointResponse' },
      errors: ['NOT_FOUND'],
      handler: async (ctx) => {
        const updated = await endpoints.update(principalOf(ctx), id(ctx), ctx.request.body, clientOf(ctx));
        return { endpoint: presentEndpoint(updated) };
      },
    }),
    defineRoute({
      method: 'DELETE',
      path: ENDPOINT,
      summary: 'Delete an endpoint; its deliveries not yet sent are dropped.',
      tag: 'webhooks',
      auth: 'any',
      scope: 'keys:manage',
      response: { status: 200, schema: 'OkResponse' },
      errors: ['NOT_FOUND'],
      handler: async (ctx) => {
        await endpoints.remove(principalOf(ctx), id(ctx), clientOf(ctx));
        return {};
      },
    }),
    defineRoute({
      method: 'POST',
      path: `${ENDPOINT}/rotate-secret`,
      summary:
        'A new signing secret (in this response only); the old one signs too for `grace_seconds` (default 24 h), so receivers switch without missing a message.',
      tag: 'webhooks',
      auth: 'any',
      scope: 'keys:manage',
      body: 'WebhookSecretRotateRequest',
      bodyOptional: true,
      response: { status: 200, schema: 'WebhookSecretRotatedResponse' },
      errors: ['NOT_FOUND', 'INVALID_STATE'],
      handler: async (ctx) => {
        const body = ctx.request.body ?? {};
        return presentEndpointWithSecret(
          await endpoints.rotateSecret(principalOf(ctx), id(ctx), body.grace_seconds, clientOf(ctx)),
        );
      },
    }),
    defineRoute({
      method: 'GET',
      path: `${ENDPOINT}/deliveries`,
      summary:
        "An endpoint's deliveries, newest first, each with every attempt (time, status, latency, the start of the answer).",
      tag: 'webhooks',
      auth: 'any',
      scope: 'keys:manage',
      query: 'WebhookDeliveryListQuery',
      response: { status: 200, schema: 'WebhookDeliveryListResponse' },
      errors: ['NOT_FOUND'],
      handler: async (ctx) => {
        const status = typeof ctx.query.status === 'string' ? ctx.query.status : undefined;
        const page = await endpoints.deliveries(principalOf(ctx), id(ctx), {
          limit: limitOf(ctx, 20),
          cursor: cursorOf(ctx),
          ...(status ? { status } : {}),
        });
        return presentDeliveryPage(page);
      },
    }),
    defineRoute({
      method: 'GET',
      path: `${ENDPOINT}/deliveries/:delivery_id`,
      summary: 'One delivery with its payload and every attempt.',
      tag: 'webhooks',
      auth: 'any',
      scope: 'keys:manage',
      response: { status: 200, schema: 'WebhookDeliveryResponse' },
      errors: ['NOT_FOUND'],
      handler: async (ctx) => {
        const delivery = await endpoints.delivery(principalOf(ctx), id(ctx), String(ctx.params.delivery_id));
        return { delivery: presentDelivery(delivery) };
      },
    }),
    defineRoute({
      method: 'POST',
      path: `${ENDPOINT}/deliveries/:delivery_id/resend`,
      summary:
        'Send a delivery again now: the same message and id (`webhook-id`), so a receiver that has it already can ignore it.',
      tag: 'webhooks',
      auth: 'any',
      scope: 'keys:manage',
      bodyOptional: true,
      response: { status: 202, schema: 'WebhookDeliveryResponse' },
      errors: ['NOT_FOUND', 'INVALID_STATE'],
      handler: async (ctx) => {
        ctx.status = 202;
        const resent = await endpoints.resend(principalOf(ctx), id(ctx), String(ctx.params.delivery_id), clientOf(ctx));
        return { delivery: presentDelivery(resent) };
      },
    }),
    defineRoute({
      method: 'POST',
      path: `${ENDPOINT}/ping`,
      summary: 'Send a `ping` message to the endpoint, to test it.',
      tag: 'webhooks',
      auth: 'any',
      scope: 'keys:manage',
      bodyOptional: true,
      response: { status: 202, schema: 'WebhookDeliveryResponse' },
      errors: ['NOT_FOUND', 'INVALID_STATE'],
      handler: async (ctx) => {
        ctx.status = 202;
        return { delivery: presentDelivery(await endpoints.ping(principalOf(ctx), id(ctx))) };
      },
    }),
    defineRoute({
      method: 'GET',
      path: '/v1/admin/webhooks/endpoints',
      summary:
        'Every webhook endpoint in your reach (tenant admins: their tenant), by id; `user_id` (id or email) filters.',
      tag: 'webhooks',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      query: 'ListQuery',
      response: { status: 200, schema: 'WebhookEndpointListResponse' },
      errors: ['FORBIDDEN', 'NOT_FOUND'],
      handler: async (ctx) => {
        const p = principalOf(ctx);
        const who =
          typeof ctx.query.user_id === 'string' ? await deps.users.findUser(p, ctx.query.user_id, clientOf(ctx)) : null;
        const page = await endpoints.list(who ? ofUser(who.id) : endpointReach(p), {
          limit: limitOf(ctx, 50),
          cursor: cursorOf(ctx),
        });
        return presentEndpointPage(page);
      },
    }),
  ]);
}
