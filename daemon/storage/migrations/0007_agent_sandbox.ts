import type { Kysely } from 'kysely';

/** Whether a session's agent ran inside the operating-system sandbox: 1 or 0 once started, null before. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('sessions').addColumn('sandboxed', 'integer').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('sessions').dropColumn('sandboxed').execute();
}
