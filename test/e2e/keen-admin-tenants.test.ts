import { expect } from 'chai';
import { sql } from 'kysely';
import { describeStorage } from '../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { runAdmin } from '../helpers/cli.js';
import { buildApiKey, buildTenant, buildUser, type TestUser } from '../helpers/factories.js';

const admin = (args: string[], env: Record<string, string>) => runAdmin(args, { env });

/** Each CLI run is a fresh Node process: allow for a busy machine. */
const SPAWN_TIMEOUT = 120_000;

describeStorage('keen-admin tenants: credit pools against a real daemon', (backend) => {
  let d: TestDaemon;
  let root: Record<string, string>;
  let tenantAdmin: Record<string, string>;
  let tenantId: string;
  let tenantName: string;
  let otherTenant: string;
  let member: TestUser;

  const poolRows = (id: string) =>
    d.container.database.db
      .selectFrom('credit_pool_ledger')
      .selectAll()
      .where('tenant_id', '=', id)
      .orderBy('seq')
      .execute();

  before(async () => {
    d = await startDaemon({ backend });
    const platform = await buildUser(d, { role: 'admin', tier: 'enterprise' });
    root = { KEEN_URL: d.url, KEEN_API_KEY: (await buildApiKey(d, platform, { name: 'ops' })).key };
    tenantName = `Pool Corp ${backend}`;
    tenantId = await buildTenant(d, tenantName);
    otherTenant = await buildTenant(d);
    const ta = await buildUser(d, { role: 'admin', tenantId });
    tenantAdmin = { KEEN_URL: d.url, KEEN_API_KEY: (await buildApiKey(d, ta, { name: 'tenant ops' })).key };
    member = await buildUser(d, { tenantId });
  });
  after(async () => d?.stop());

  it('tenants grant TENANT AMOUNT: by id (--json) and by name (table); the pool shows in tenants list', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const j = await admin(['tenants', 'grant', tenantId, '10', '--reason', 'Q3 allotment', '--json'], root);
    expect(j.code, j.stderr).to.equal(0);
    expect(j.json.transaction).to.include({ kind: 'grant', amount: 10, balance_after: 10, reason: 'Q3 allotment' });
    expect(j.json.pool).to.include({ tenant_id: tenantId, balance: 10 });
    const t = await admin(['tenants', 'grant', tenantName, '2.5'], root);
    expect(t.code, t.stderr).to.equal(0);
    expect(t.stdout).to.match(/^TRANSACTION\s+TENANT\s+AMOUNT\s+POOL\n/);
    expect(t.stdout).to.match(new RegExp(`txn_\\S+\\s+${tenantId}\\s+2\\.5\\s+12\\.5\\n$`));
    expect((await poolRows(tenantId)).map((e) => e.reason)).to.deep.equal(['Q3 allotment', 'granted with keen-admin']);

    const list = await admin(['tenants', 'list'], root);
    expect(list.code, list.stderr).to.equal(0);
    expect(list.stdout).to.match(/^ID\s+NAME\s+POOL\s+CREATED_AT\n/);
    expect(list.stdout).to.match(new RegExp(`${tenantId}\\s+${tenantName}\\s+12\\.5\\s`));
    expect(list.stdout).to.match(new RegExp(`${otherTenant}\\s+\\S+\\s+0\\s`));
    const lj = await admin(['tenants', 'list', '--json'], root);
    expect(lj.json.tenants.find((x: { id: string }) => x.id === tenantId)).to.include({ name: tenantName, pool: 12.5 });
  });

  it('--idempotency-key lands once; the key with another amount is refused', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const args = ['tenants', 'grant', otherTenant, '3', '--idempotency-key', 'cli-pool-1', '--json'];
    const first = await admin(args, root);
    const again = await admin(args, root);
    expect(first.code, first.stderr).to.equal(0);
    expect(again.code, again.stderr).to.equal(0);
    expect(again.json).to.deep.equal(first.json);
    expect(await poolRows(otherTenant)).to.have.length(1);
    const other = await admin(['tenants', 'grant', otherTenant, '4', '--idempotency-key', 'cli-pool-1'], root);
    expect(other.code).to.equal(1);
    expect(other.stderr).to.include('IDEMPOTENCY_KEY_REUSED');
    expect(await poolRows(otherTenant)).to.have.length(1);
  });

  it('exits 2 on a malformed amount or key before any request; 1 for an unknown tenant', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const runs = await Promise.all(
      ['abc', '0', '-5', '1.1234567', '1e308'].map((amount) => admin(['tenants', 'grant', tenantId, amount], root)),
    );
    for (const r of runs) {
      expect(r.code, r.stderr).to.equal(2);
      expect(r.stderr).to.include('AMOUNT');
    }
    expect((await admin(['tenants', 'grant', tenantId, '1', '--idempotency-key', 'é'], root)).code).to.equal(2);
    expect((await admin(['tenants', 'grant', tenantId], root)).code).to.equal(2);
    const byName = await admin(['tenants', 'grant', 'No Such Tenant', '1'], root);
    expect(byName.code).to.equal(1);
    expect(byName.stderr).to.include('NOT_FOUND');
    const byId = await admin(['tenants', 'grant', 'ten_00000000000000000000000000', '1'], root);
    expect(byId.code).to.equal(1);
    expect(byId.stderr).to.include('NOT_FOUND');
    expect(await poolRows(tenantId)).to.have.length(2);
  });

  it('a tenant admin hands the pool out with credits grant, sees its own pool, and cannot grant into it', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const g = await admin(
      ['credits', 'grant', '--user', member.email, '--amount', '4', '--reason', 'sprint'],
      tenantAdmin,
    );
    expect(g.code, g.stderr).to.equal(0);
    expect(g.stdout).to.match(/^TRANSACTION\s+USER\s+AMOUNT\s+BALANCE\s+RESERVED\s+AVAILABLE\s+POOL\n/);
    expect(g.stdout).to.match(/txn_\S+\s+\S+\s+4\s+4\s+0\s+4\s+8\.5\n$/);
    const short = await admin(['credits', 'grant', '--user', member.email, '--amount', '9'], tenantAdmin);
    expect(short.code).to.equal(1);
    expect(short.stderr).to.include('INSUFFICIENT_CREDITS').and.include(tenantId);

    const list = await admin(['tenants', 'list', '--json'], tenantAdmin);
    expect(list.code, list.stderr).to.equal(0);
    expect(list.json.tenants).to.have.length(1);
    expect(list.json.tenants[0]).to.include({ id: tenantId, pool: 8.5 });
    const c = await admin(['tenants', 'credits', tenantId, '--limit', '2'], tenantAdmin);
    expect(c.code, c.stderr).to.equal(0);
    expect(c.stdout).to.match(
      /^pool ten_\S+: 8\.5 credits\nID\s+CREATED_AT\s+KIND\s+AMOUNT\s+BALANCE_AFTER\s+USER_ID\s+TRANSACTION_ID\s+REASON\n/,
    );
    expect(c.stdout).to.include('transfer').and.include(member.user.id);
    expect(c.stderr).to.include('more: --cursor ');
    const cj = await admin(['tenants', 'credits', tenantId, '--json'], tenantAdmin);
    expect(cj.json.entries.map((e: { kind: string }) => e.kind)).to.deep.equal(['transfer', 'grant', 'grant']);

    const own = await admin(['tenants', 'grant', tenantId, '100'], tenantAdmin);
    expect(own.code).to.equal(1);
    expect(own.stderr).to.include('FORBIDDEN');
    const other = await admin(['tenants', 'credits', otherTenant], tenantAdmin);
    expect(other.code).to.equal(1);
    expect(other.stderr).to.include('NOT_FOUND');
    expect(await poolRows(tenantId)).to.have.length(3);
  });

  it('credits verify names a tampered pool', async function () {
    this.timeout(SPAWN_TIMEOUT);
    expect((await admin(['credits', 'verify'], root)).code).to.equal(0);
    const [entry] = await poolRows(tenantId);
    await sql`UPDATE credit_pool_ledger SET amount = amount + 1000000 WHERE id = ${entry!.id}`.execute(
      d.container.database.db,
    );
    try {
      const bad = await admin(['credits', 'verify'], root);
      expect(bad.code).to.equal(1);
      expect(bad.stderr).to.include(`mismatch: pool ${tenantId} balance: expected 9.5, stored 8.5`);
      expect(bad.stderr).to.include(`mismatch: pool ${tenantId} chain at ${entry!.id}`);
      expect(bad.stderr).to.include('LEDGER_MISMATCH');
    } finally {
      await sql`UPDATE credit_pool_ledger SET amount = amount - 1000000 WHERE id = ${entry!.id}`.execute(
        d.container.database.db,
      );
    }
    expect((await admin(['credits', 'verify'], root)).code).to.equal(0);
  });
});
