import type { StreamServer } from '../../ws/stream-server.js';
import { principalOf } from '../middleware/authenticate.js';
import { defineRoute, defineRoutes } from '../routes.js';

/** `POST /v1/stream/tickets`: single-use tickets for browsers opening the stream. */
export function streamTicketRoutes(deps: { stream: StreamServer }) {
  const { stream } = deps;
  return defineRoutes([
    defineRoute({
      method: 'POST',
      path: '/v1/stream/tickets',
      summary:
        'A single-use ticket (30 s) to open GET /v1/stream?ticket=... ' +
        'where an Authorization header cannot be set (browsers).',
      tag: 'stream',
      auth: 'any',
      scope: 'sessions:read',
      response: { status: 201, schema: 'StreamTicketResponse' },
      errors: ['UNAVAILABLE'],
      handler: async (ctx) => {
        // The guard authenticated this request: the ticket holds that principal's grant (no second check).
        return stream.issueTicket(principalOf(ctx), ctx.get('Authorization'));
      },
    }),
  ]);
}
