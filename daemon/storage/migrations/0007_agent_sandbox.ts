import type { Kysely } from 'kysely';

/** Whether a session's agent runs inside the operating-system sandbox: 1 or 0, set at execute; null on older sessions. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('sessions').addColumn('sandboxed', 'integer').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('sessions').dropColumn('sandboxed').execute();
}
