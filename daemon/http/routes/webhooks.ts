import type { WebhookService } from '../../webhooks/service.js';
import { principalOf } from '../middleware/authenticate.js';
import { defineRoutes } from '../routes.js';

/** The caller's webhook signing secret, to verify what the gateway sends to its `webhook_url`. */
export function webhookRoutes(deps: { webhooks: WebhookService }) {
  return defineRoutes([
    {
      method: 'GET',
      path: '/v1/webhooks/secret',
      summary: 'Your webhook signing secret (Standard Webhooks, whsec_...): verify the webhook-signature header with it.',
      tag: 'webhooks',
      auth: 'bearer',
      response: { status: 200, schema: 'WebhookSecretResponse' },
      errors: ['FORBIDDEN'],
      handler: (ctx) => {
        ctx.body = { success: true, secret: deps.webhooks.signingSecretFor(principalOf(ctx).userId) };
      },
    },
  ]);
}
