import type { Queryable } from '../storage/database.js';
import type { AuditAction } from './actions.js';

/** Who did it. `admin` is a user acting through the admin API; `system` the daemon itself (reaper, start-up). */
export type AuditActorType = 'user' | 'api_key' | 'admin' | 'system' | 'anonymous';

export interface AuditEvent {
  /** `resource.verb`, one of AUDIT_ACTIONS (daemon/audit/actions.ts; docs/audit.md, "Actions"). */
  action: AuditAction;
  outcome: 'success' | 'failure' | 'denied';
  actor: { type: AuditActorType; id: string | null };
  tenantId: string | null;
  target?: { type: string; id: string } | null;
  ip?: string | null;
  userAgent?: string | null;
  requestId?: string | null;
  /** Free-form context; redacted in one place before it is stored. */
  details?: Record<string, unknown>;
}

/**
 * Where every security-relevant event goes. Pass `trx` when the action itself
 * writes the database, so the entry commits (or rolls back) with it.
 */
export interface AuditLogger {
  record(event: AuditEvent, trx?: Queryable): Promise<void>;
}

/** Keeps events in memory: for unit tests of services that audit. */
export class MemoryAuditLogger implements AuditLogger {
  readonly events: AuditEvent[] = [];
  async record(event: AuditEvent): Promise<void> {
    this.events.push(structuredClone(event));
  }
}
