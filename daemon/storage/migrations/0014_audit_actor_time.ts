import type { Kysely } from 'kysely';

/**
 * `audit_log (actor_id, ts, seq)`: turns an actor's time window into the seq range of its
 * entries (`AuditRepository.page`), read from the index alone, so a page of the window then
 * walks `(actor_id, seq)` inside that range instead of every newer entry of the actor.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createIndex('audit_log_actor_ts_seq_idx')
    .on('audit_log')
    .columns(['actor_id', 'ts', 'seq'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('audit_log_actor_ts_seq_idx').execute();
}
