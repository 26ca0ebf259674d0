import { createHash } from 'node:crypto';
import type { Selectable } from 'kysely';
import type { AuditTables } from '../storage/tables/audit.js';
import { canonicalJson } from './canonical.js';

/** prev_hash of the first entry. */
export const GENESIS_HASH = '0'.repeat(64);

export type AuditRow = Selectable<AuditTables['audit_log']>;

/**
 * One audit entry as it is read, exported and archived (one JSON Lines line
 * each): the stored row (`audit_log`, whose columns the API's AuditEntry
 * schema mirrors) with `details` parsed. Every field except `hash` is covered
 * by the hash, so a line can be verified on its own with {@link entryHash}.
 */
export interface AuditRecord extends Omit<AuditRow, 'details'> {
  details: Record<string, unknown>;
}

/** Details text that is not JSON (a tampered row): read as this marker, which never hashes to the stored hash. */
const UNPARSEABLE = '__unparseable_details__';

/** The read model of a stored row. Never throws on a tampered row. */
export function rowToRecord(row: AuditRow): AuditRecord {
  let details: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(row.details);
    details =
      typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)
        ? (parsed as Record<string, unknown>)
        : { [UNPARSEABLE]: row.details };
  } catch {
    details = { [UNPARSEABLE]: row.details };
  }
  return {
    seq: Number(row.seq),
    id: row.id,
    ts: Number(row.ts),
    actor_type: row.actor_type,
    actor_id: row.actor_id,
    tenant_id: row.tenant_id,
    action: row.action,
    target_type: row.target_type,
    target_id: row.target_id,
    outcome: row.outcome,
    ip: row.ip,
    user_agent: row.user_agent,
    request_id: row.request_id,
    details,
    prev_hash: row.prev_hash,
    hash: row.hash,
  };
}

/**
 * hash = sha256(prev_hash || canonical_json(entry without hash)), hex.
 * The prev_hash is both the prefix and one of the hashed fields.
 */
export function entryHash(entry: Omit<AuditRecord, 'hash'> | AuditRecord): string {
  const { hash: _ignored, ...fields } = entry as AuditRecord;
  return createHash('sha256').update(entry.prev_hash, 'utf8').update(canonicalJson(fields), 'utf8').digest('hex');
}

/** One JSON Lines line (with the newline) for exports and archives. */
export function toJsonLine(record: AuditRecord): string {
  return `${JSON.stringify(record)}\n`;
}
