import type { AuditEntry } from '../../../schemas/types.gen.js';
import type { AuditRecord } from '../../audit/entry.js';

/**
 * An audit entry as GET /v1/admin/audit lists it: the stored record as it is (its fields are
 * what the hash chain covers), typed as schemas/api/AuditEntry.json. The columns are text in
 * storage; what the audit logger writes into them is the schema's enums (AuditEvent).
 */
export function presentAuditEntry(r: AuditRecord): AuditEntry {
  return { ...r, actor_type: r.actor_type as AuditEntry['actor_type'], outcome: r.outcome as AuditEntry['outcome'] };
}
