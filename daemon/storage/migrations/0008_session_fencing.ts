import type { Kysely } from 'kysely';

/**
 * The fencing token of a session's lease (docs/DEPLOY.md, "Failure modes"):
 * every write its owner makes (events, usage, the final settlement) is
 * conditional on the epoch it started with; whoever else ends the session (the
 * reaper of another daemon, a restart's recovery) moves the epoch on in the
 * same update, so a stale owner's late writes are refused.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('sessions')
    .addColumn('lease_epoch', 'integer', (c) => c.notNull().defaultTo(1))
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('sessions').dropColumn('lease_epoch').execute();
}
