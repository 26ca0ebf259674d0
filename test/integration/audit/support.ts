import { ManualClock } from '../../../daemon/clock.js';
import { createLogger } from '../../../daemon/logger.js';
import { entryHash, rowToRecord } from '../../../daemon/audit/entry.js';
import { DatabaseAuditLogger, type DatabaseAuditLoggerOptions } from '../../../daemon/audit/store.js';
import type { AuditEvent } from '../../../daemon/audit/types.js';
import type { Database } from '../../../daemon/storage/database.js';
import { AuditRepository } from '../../../daemon/storage/repos/audit.js';

export const silent = createLogger('silent');

export function makeAuditLogger(
  database: Database,
  clock = new ManualClock(),
  extra: Partial<DatabaseAuditLoggerOptions> = {},
): { audit: DatabaseAuditLogger; clock: ManualClock } {
  return {
    audit: new DatabaseAuditLogger({
      database,
      audits: new AuditRepository(database),
      clock,
      logger: silent,
      ...extra,
    }),
    clock: clock as ManualClock,
  };
}

/** A plausible event; `n` varies it. */
export function sampleEvent(n: number, overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    action: n % 2 === 0 ? 'auth.login' : 'key.create',
    outcome: 'success',
    actor: { type: 'user', id: `usr_${String(n).padStart(26, '0')}` },
    tenantId: 'ten_a',
    target: { type: 'user', id: `usr_${String(n).padStart(26, '0')}` },
    ip: '127.0.0.1',
    userAgent: 'mocha',
    requestId: `req_${n}`,
    details: { n },
    ...overrides,
  };
}

export async function appendMany(
  audit: DatabaseAuditLogger,
  count: number,
  overrides: Partial<AuditEvent> = {},
): Promise<void> {
  for (let i = 1; i <= count; i++) await audit.record(sampleEvent(i, overrides));
}

/**
 * What an attacker with write access to the database would do after changing
 * entries: recompute every hash from `fromSeq` on and move the head, so the
 * chain is self-consistent again.
 */
export async function rehashFrom(database: Database, fromSeq: number): Promise<void> {
  const db = database.db;
  const before = await db
    .selectFrom('audit_log')
    .select('hash')
    .where('seq', '=', fromSeq - 1)
    .executeTakeFirst();
  let prev = before?.hash ?? '0'.repeat(64);
  const rows = await db.selectFrom('audit_log').selectAll().where('seq', '>=', fromSeq).orderBy('seq', 'asc').execute();
  for (const row of rows) {
    const rec = { ...rowToRecord(row), prev_hash: prev };
    const hash = entryHash(rec);
    await db.updateTable('audit_log').set({ prev_hash: prev, hash }).where('seq', '=', row.seq).execute();
    prev = hash;
  }
  const last = rows[rows.length - 1];
  if (last)
    await db
      .updateTable('audit_head')
      .set({ seq: Number(last.seq), hash: prev })
      .where('id', '=', 'chain')
      .execute();
}
