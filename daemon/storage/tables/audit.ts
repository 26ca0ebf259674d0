/**
 * Audit log tables (migration 0004_audit). See docs/audit.md.
 *
 * `audit_log` is append-only: each row is chained to the one before it by
 * `prev_hash`/`hash`, in `seq` order (1, 2, 3, ...). `audit_head` is a single
 * row (`id = 'chain'`) holding the last appended seq and hash; appends lock it,
 * which gives the chain one order even with several daemons on one Postgres.
 * `audit_archive` remembers each retention cut so the chain still verifies
 * after old entries have been moved to files.
 */
export interface AuditTables {
  audit_log: {
    /** `aud_...` */
    id: string;
    /** Chain position: 1, 2, 3, ... without gaps. */
    seq: number;
    /** Epoch milliseconds. */
    ts: number;
    actor_type: string;
    actor_id: string | null;
    tenant_id: string | null;
    /** `resource.verb` */
    action: string;
    target_type: string | null;
    target_id: string | null;
    outcome: 'success' | 'failure' | 'denied';
    ip: string | null;
    user_agent: string | null;
    request_id: string | null;
    /** Canonical JSON text of the redacted details. */
    details: string;
    /** Hex sha256 of the previous entry; 64 zeros for seq 1. */
    prev_hash: string;
    /** Hex sha256(prev_hash || canonical_json(entry without hash)). */
    hash: string;
  };
  audit_head: {
    /** Always `'chain'`. */
    id: string;
    seq: number;
    hash: string;
  };
  audit_archive: {
    first_seq: number;
    last_seq: number;
    /** Hash of entry `last_seq`: the prev_hash the first kept entry must carry. */
    last_hash: string;
    /** File name (inside the archive directory) holding entries first_seq..last_seq as JSON Lines. */
    file: string;
    entries: number;
    created_at: number;
  };
}
