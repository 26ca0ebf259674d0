import type { Kysely } from 'kysely';

/**
 * Who suspended a user (docs/API.md, "Roles and credentials"): `tenant_admin`
 * or `platform_admin`, null while the user is active. A tenant admin cannot
 * lift a suspension a platform admin made. Users suspended before this
 * migration are recorded as suspended by the platform: only a platform admin
 * can reactivate them (who did it is in the audit log).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('users').addColumn('suspended_by_role', 'varchar(20)').execute();
  await (db as Kysely<{ users: { status: string; suspended_by_role: string | null } }>)
    .updateTable('users')
    .set({ suspended_by_role: 'platform_admin' })
    .where('status', '=', 'suspended')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('users').dropColumn('suspended_by_role').execute();
}
