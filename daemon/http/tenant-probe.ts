import { actorOf, auditContext } from '../audit/actor.js';
import type { AuditLogger } from '../audit/types.js';
import type { ClientInfo } from '../auth/auth-service.js';
import type { Principal } from '../auth/principal.js';
import { notFound } from '../errors.js';

/**
 * A tenant admin naming another tenant: answered 404 like a tenant that does not
 * exist (no hint that it does), and audited as a probe (`access.not_found`).
 */
export function tenantProbe(audit: AuditLogger) {
  return async (p: Principal, tenantId: string, client: ClientInfo): Promise<never> => {
    await audit.record({
      action: 'access.not_found',
      outcome: 'denied',
      actor: actorOf(p),
      tenantId: p.tenantId,
      target: { type: 'tenant', id: tenantId.slice(0, 64) },
      ...auditContext(client),
    });
    throw notFound('tenant');
  };
}
