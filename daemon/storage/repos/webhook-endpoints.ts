import type { Selectable } from 'kysely';
import { reachFilter, type Reach } from '../../policies/index.js';
import type { Database, Queryable } from '../database.js';
import type { WebhookTables } from '../tables/webhooks.js';

export type EndpointRow = Selectable<WebhookTables['webhook_endpoints']>;

/** What an event needs of an endpoint to decide whether it goes there. */
export type EndpointSubscription = Pick<
  EndpointRow,
  'id' | 'user_id' | 'tenant_id' | 'url' | 'event_types' | 'low_balance_threshold'
>;

/** Registered webhook endpoints. Reads that a caller makes take its reach (daemon/policies), applied in SQL. */
export class WebhookEndpointRepository {
  private readonly db: Queryable;

  constructor(database: Pick<Database, 'db'>) {
    this.db = database.db;
  }

  async countOfUser(trx: Queryable, userId: string): Promise<number> {
    const count = await trx
      .selectFrom('webhook_endpoints')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('user_id', '=', userId)
      .executeTakeFirstOrThrow();
    return Number(count.n);
  }

  async insert(trx: Queryable, row: EndpointRow): Promise<void> {
    await trx.insertInto('webhook_endpoints').values(row).execute();
  }

  /** Endpoints in `reach` by id: `limit` rows after `cursor`. */
  async list(reach: Reach, options: { limit: number; cursor?: string | null }): Promise<EndpointRow[]> {
    const f = reachFilter(reach);
    let q = this.db.selectFrom('webhook_endpoints').selectAll();
    if (f) q = q.where(f.column, '=', f.value);
    if (options.cursor) q = q.where('id', '>', options.cursor);
    return q.orderBy('id').limit(options.limit).execute();
  }

  async find(id: string, reach: Reach): Promise<EndpointRow | undefined> {
    const f = reachFilter(reach);
    let q = this.db.selectFrom('webhook_endpoints').selectAll().where('id', '=', id);
    if (f) q = q.where(f.column, '=', f.value);
    return q.executeTakeFirst();
  }

  async update(trx: Queryable, id: string, patch: Partial<EndpointRow>): Promise<void> {
    await trx.updateTable('webhook_endpoints').set(patch).where('id', '=', id).execute();
  }

  async delete(trx: Queryable, id: string): Promise<void> {
    await trx.deleteFrom('webhook_endpoints').where('id', '=', id).execute();
  }

  /** Compare-and-set on the sealed secret: applies `patch` only if the secret is still `secretEnc`. */
  async replaceSecret(trx: Queryable, id: string, secretEnc: string, patch: Partial<EndpointRow>): Promise<boolean> {
    const r = await trx
      .updateTable('webhook_endpoints')
      .set(patch)
      .where('id', '=', id)
      .where('secret_enc', '=', secretEnc)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** The enabled endpoints of these users, by id, in `trx` (the transaction of the change an event reports). */
  async enabledOf(trx: Queryable, userIds: string[]): Promise<EndpointSubscription[]> {
    return trx
      .selectFrom('webhook_endpoints')
      .select(['id', 'user_id', 'tenant_id', 'url', 'event_types', 'low_balance_threshold'])
      .where('user_id', 'in', userIds)
      .where('enabled', '=', 1)
      .orderBy('id')
      .execute();
  }

  /** Where a delivery to the endpoint goes and what signs it. */
  async target(
    id: string,
  ): Promise<
    | Pick<EndpointRow, 'url' | 'enabled' | 'secret_enc' | 'previous_secret_enc' | 'previous_secret_expires_at'>
    | undefined
  > {
    return this.db
      .selectFrom('webhook_endpoints')
      .select(['url', 'enabled', 'secret_enc', 'previous_secret_enc', 'previous_secret_expires_at'])
      .where('id', '=', id)
      .executeTakeFirst();
  }

  /** A delivered attempt: the endpoint is no longer failing. */
  async clearFailing(trx: Queryable, id: string): Promise<void> {
    await trx
      .updateTable('webhook_endpoints')
      .set({ failing_since: null })
      .where('id', '=', id)
      .where('failing_since', 'is not', null)
      .execute();
  }

  async health(
    trx: Queryable,
    id: string,
  ): Promise<Pick<EndpointRow, 'user_id' | 'tenant_id' | 'failing_since' | 'enabled'> | undefined> {
    return trx
      .selectFrom('webhook_endpoints')
      .select(['user_id', 'tenant_id', 'failing_since', 'enabled'])
      .where('id', '=', id)
      .executeTakeFirst();
  }

  async markFailing(trx: Queryable, id: string, since: number): Promise<void> {
    await trx.updateTable('webhook_endpoints').set({ failing_since: since }).where('id', '=', id).execute();
  }

  async disable(trx: Queryable, id: string, reason: string, now: number): Promise<void> {
    await trx
      .updateTable('webhook_endpoints')
      .set({ enabled: 0, disabled_reason: reason, disabled_at: now, updated_at: now })
      .where('id', '=', id)
      .execute();
  }
}
