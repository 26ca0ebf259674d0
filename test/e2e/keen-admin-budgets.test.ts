import { expect } from 'chai';
import { describeStorage } from '../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { runAdmin } from '../helpers/cli.js';
import { buildApiKey, buildTenant, buildUser, type TestUser } from '../helpers/factories.js';

const admin = (args: string[], env: Record<string, string>) => runAdmin(args, { env });
/** Each CLI run is a fresh Node process: allow for a busy machine. */
const SPAWN_TIMEOUT = 120_000;

describeStorage('keen-admin budgets: keys, users, tenants against a real daemon', (backend) => {
  let d: TestDaemon;
  let root: Record<string, string>;
  let tenantId: string;
  let member: TestUser;

  before(async () => {
    d = await startDaemon({ backend });
    const platform = await buildUser(d, { role: 'admin', tier: 'enterprise' });
    root = { KEEN_URL: d.url, KEEN_API_KEY: (await buildApiKey(d, platform, { name: 'ops' })).key };
    tenantId = await buildTenant(d);
    member = await buildUser(d, { tenantId });
  });
  after(async () => d?.stop());

  it('keys create --budget, keys list shows it, keys update --no-budget removes it', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const c = await admin(
      ['keys', 'create', '--user', member.email, '--name', 'ci', '--budget', '20', '--budget-period', 'day', '--json'],
      root,
    );
    expect(c.code, c.stderr).to.equal(0);
    expect(c.json.api_key.budget).to.include({ amount: 20, period: 'day', used: 0, set_by: 'platform_admin' });
    const id = c.json.api_key.id as string;
    const list = await admin(['keys', 'list', '--user', member.email], root);
    expect(list.code, list.stderr).to.equal(0);
    expect(list.stdout.split('\n')[0]).to.match(/\bBUDGET\b.*\bCHARGED_30D\s+SESSIONS_30D$/);
    expect(list.stdout.split('\n').find((l) => l.startsWith(id))).to.include('0/20 per day');
    const u = await admin(['keys', 'update', id, '--budget', '5.5', '--budget-period', 'week', '--json'], root);
    expect(u.code, u.stderr).to.equal(0);
    expect(u.json.api_key.budget).to.include({ amount: 5.5, period: 'week' });
    const r = await admin(['keys', 'update', id, '--no-budget', '--json'], root);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json.api_key.budget).to.equal(null);
  });

  it('users update and tenants update set and remove budgets; budgets list shows them', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const user = await admin(
      ['users', 'update', member.email, '--budget', '200', '--budget-period', 'month', '--json'],
      root,
    );
    expect(user.code, user.stderr).to.equal(0);
    expect(user.json.budget).to.include({ subject: 'user', id: member.user.id, amount: 200, period: 'month' });
    const tenant = await admin(['tenants', 'update', tenantId, '--budget', '5000', '--budget-period', 'total'], root);
    expect(tenant.code, tenant.stderr).to.equal(0);
    expect(tenant.stdout)
      .to.match(/^SUBJECT\s+ID\s+AMOUNT\s+PERIOD/)
      .and.include(tenantId);
    const list = await admin(['budgets', 'list', '--json'], root);
    expect(list.code, list.stderr).to.equal(0);
    const ids = list.json.budgets.map((b: { id: string }) => b.id);
    expect(ids).to.include.members([member.user.id, tenantId]);
    const tenants = await admin(['budgets', 'list', '--subject', 'tenant'], root);
    expect(tenants.stdout).to.include(tenantId).and.not.include(member.user.id);
    const gone = await admin(['users', 'update', member.email, '--no-budget'], root);
    expect(gone.code, gone.stderr).to.equal(0);
    expect(gone.stdout).to.include('budget removed');
    const again = await admin(['users', 'update', member.email, '--no-budget'], root);
    expect(again.code).to.equal(1);
    expect(again.stderr).to.match(/not found/i);
  });

  it('usage errors exit 2 before connecting', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const offline = { KEEN_URL: 'http://127.0.0.1:9', KEEN_API_KEY: root.KEEN_API_KEY! };
    for (const args of [
      ['users', 'update', member.email, '--budget', '5'],
      ['users', 'update', member.email, '--budget-period', 'day'],
      ['users', 'update', member.email, '--budget', 'five', '--budget-period', 'day'],
      ['users', 'update', member.email],
      ['tenants', 'update', tenantId, '--budget', '5', '--budget-period', 'year'],
      ['keys', 'create', '--user', member.email, '--name', 'x', '--budget', '0', '--budget-period', 'day'],
    ]) {
      const r = await admin(args, offline);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(2);
    }
  });
});
