import type { StreamServer } from '../../ws/stream-server.js';
import { defineRoutes } from '../routes.js';

/** `POST /v1/stream/tickets`: single-use tickets for browsers opening the stream. */
export function streamTicketRoutes(deps: { stream: StreamServer }) {
  void deps;
  return defineRoutes([]);
}
