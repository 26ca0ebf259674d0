import { expect } from 'chai';
import type { AuditEvent, AuditLogger } from '../../../daemon/audit/types.js';
import { ManualClock } from '../../../daemon/clock.js';
import { CreditLedger } from '../../../daemon/credits/ledger.js';
import { newId } from '../../../daemon/ids.js';
import { createLogger } from '../../../daemon/logger.js';
import { Metrics } from '../../../daemon/metrics.js';
import { Database, type Queryable } from '../../../daemon/storage/database.js';
import { creditRepositories } from '../../../daemon/storage/repos/credits.js';
import { insertTestUser } from '../../helpers/users.js';

/** An audit logger that remembers each event and whether it was given the action's transaction. */
export class RecordingAuditLogger implements AuditLogger {
  readonly events: Array<AuditEvent & { withTrx: boolean }> = [];
  async record(event: AuditEvent, trx?: Queryable): Promise<void> {
    this.events.push({ ...structuredClone(event), withTrx: trx !== undefined });
  }
  actions(): string[] {
    return this.events.map((e) => e.action);
  }
}

/** Inserts a user row directly (the credit tables reference users), in a new tenant unless `tenantId` is given. */
export async function buildUser(database: Database, overrides: { tenantId?: string | null } = {}): Promise<string> {
  let tenantId = overrides.tenantId ?? null;
  if (overrides.tenantId === undefined) {
    tenantId = newId('ten');
    await database.db
      .insertInto('tenants')
      .values({ id: tenantId, name: `tenant-${tenantId}`, created_at: Date.now() })
      .execute();
  }
  const user = await insertTestUser(database, { tenant_id: tenantId });
  return user.id;
}

export interface LedgerFixture {
  ledger: CreditLedger;
  clock: ManualClock;
  audit: RecordingAuditLogger;
  metrics: Metrics;
}

export function buildLedger(
  database: Database,
  options: { clock?: ManualClock; instanceId?: string } = {},
): LedgerFixture {
  const clock = options.clock ?? new ManualClock();
  const audit = new RecordingAuditLogger();
  const metrics = new Metrics({ defaultMetrics: false });
  const repositories = creditRepositories(database);
  const instance = options.instanceId ? { instanceId: options.instanceId } : {};
  const ledger = new CreditLedger({ database, repositories, clock, audit, metrics, ...instance });
  return { ledger, clock, audit, metrics };
}

/** A second connection pool on the same store: what another daemon would hold. */
export function openSecondDatabase(url: string, poolMax = 10): Database {
  return new Database({ url, poolMax, connectTimeoutMs: 5000, busyTimeoutMs: 10_000, logger: createLogger('silent') });
}

/**
 * The data invariants (ARCHITECTURE): for every account, balance = sum(ledger
 * amounts), reserved = sum(open reservations), available = balance - reserved >= 0.
 */
export async function expectInvariants(database: Database): Promise<void> {
  const accounts = await database.db.selectFrom('credit_accounts').selectAll().execute();
  for (const a of accounts) {
    const entries = await database.db
      .selectFrom('credit_ledger')
      .select(['amount'])
      .where('user_id', '=', a.user_id)
      .execute();
    const open = await database.db
      .selectFrom('credit_reservations')
      .select(['amount'])
      .where('user_id', '=', a.user_id)
      .where('status', '=', 'open')
      .execute();
    const ledgerSum = entries.reduce((s, e) => s + Number(e.amount), 0);
    const openSum = open.reduce((s, r) => s + Number(r.amount), 0);
    expect(Number(a.balance), `balance of ${a.user_id} = sum(ledger)`).to.equal(ledgerSum);
    expect(Number(a.reserved), `reserved of ${a.user_id} = sum(open reservations)`).to.equal(openSum);
    expect(Number(a.balance) - Number(a.reserved), `available of ${a.user_id} >= 0`).to.be.at.least(0);
  }
}

/** Awaits a promise that must reject with a GatewayError of `code`; returns the error. */
export async function expectCode(
  promise: Promise<unknown>,
  code: string,
): Promise<Error & { code: string; details: unknown; status: number }> {
  try {
    await promise;
  } catch (err) {
    const e = err as Error & { code: string; details: unknown; status: number };
    expect(e.code, e.message).to.equal(code);
    return e;
  }
  expect.fail(`expected ${code}, but it succeeded`);
}
