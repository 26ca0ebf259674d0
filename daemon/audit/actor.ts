import type { ClientInfo } from '../auth/auth-service.js';
import type { Principal } from '../auth/principal.js';
import type { AuditEvent } from './types.js';

/** Who an entry says acted (`actor_type`, `actor_id`; docs/audit.md). */
export type AuditActor = AuditEvent['actor'];

/** Where the request behind an entry came from, as the edge established it (daemon/http/edge.ts). */
export type AuditContext = Required<Pick<AuditEvent, 'ip' | 'userAgent' | 'requestId'>>;

/** The daemon itself (reaper, start-up, a CLI command without a caller). */
export const SYSTEM_ACTOR: AuditActor = Object.freeze({ type: 'system', id: null });
/** A caller not (yet) authenticated: a sign-in attempt, a request refused before authentication. */
export const ANONYMOUS_ACTOR: AuditActor = Object.freeze({ type: 'anonymous', id: null });

/**
 * The actor of a principal, by the credential it came with: an API key is
 * `api_key` (its id); a user's access token is `user` (the user id), or `admin`
 * when the user acts with administrator reach on what is not their own
 * (`asAdmin`). No principal: `system`.
 */
export function actorOf(p: Principal | null, options: { asAdmin?: boolean } = {}): AuditActor {
  if (p === null) return SYSTEM_ACTOR;
  if (p.via === 'api_key') return { type: 'api_key', id: p.apiKeyId ?? p.userId };
  return { type: options.asAdmin ? 'admin' : 'user', id: p.userId };
}

/**
 * The user account behind a principal, whatever credential it came with:
 * user, tenant and API key management (daemon/users/user-admin.ts) is recorded
 * against the person, `admin` when acting as an administrator, else `user`.
 * No principal: `system`.
 */
export function accountActor(p: Principal | null, asAdmin: boolean): AuditActor {
  if (p === null) return SYSTEM_ACTOR;
  return { type: asAdmin ? 'admin' : 'user', id: p.userId };
}

/** The `ip`, `userAgent` and `requestId` of an entry, from the edge's client info; nulls without one. */
export function auditContext(client?: ClientInfo | null): AuditContext {
  return { ip: client?.ip ?? null, userAgent: client?.userAgent ?? null, requestId: client?.requestId ?? null };
}
