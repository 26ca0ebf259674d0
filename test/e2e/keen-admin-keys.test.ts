import { expect } from 'chai';
import { describeStorage } from '../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { runAdmin } from '../helpers/cli.js';
import { buildApiKey, buildTenant, buildUser, type TestUser } from '../helpers/factories.js';

const admin = (args: string[], env: Record<string, string>) => runAdmin(args, { env });

/** Each CLI run is a fresh Node process: allow for a busy machine. */
const SPAWN_TIMEOUT = 120_000;

describeStorage('keen-admin keys: list, update, roll against a real daemon', (backend) => {
  let d: TestDaemon;
  let root: Record<string, string>;
  let tenantAdmin: Record<string, string>;
  let member: TestUser;
  let outsider: TestUser;

  before(async () => {
    d = await startDaemon({ backend });
    const platform = await buildUser(d, { role: 'admin', tier: 'enterprise' });
    root = { KEEN_URL: d.url, KEEN_API_KEY: (await buildApiKey(d, platform, { name: 'ops' })).key };
    const tenantId = await buildTenant(d);
    const ta = await buildUser(d, { role: 'admin', tenantId });
    tenantAdmin = { KEEN_URL: d.url, KEEN_API_KEY: (await buildApiKey(d, ta, { name: 'tenant ops' })).key };
    member = await buildUser(d, { tenantId });
    outsider = await buildUser(d);
  });
  after(async () => d?.stop());

  it('keys list shows LAST_USED_AT as a column', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const k = await buildApiKey(d, member, { name: 'listed' });
    expect((await d.api.get('/v1/me', { apiKey: k.key })).status).to.equal(200);
    const t = await admin(['keys', 'list', '--user', member.email], root);
    expect(t.code, t.stderr).to.equal(0);
    expect(t.stdout.split('\n')[0]).to.match(/\bLAST_USED_AT\b/);
    const line = t.stdout.split('\n').find((l) => l.startsWith(k.id))!;
    expect(line).to.match(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/);
  });

  it('keys update ID changes what is given (--name, --scopes, --rate-limit, --expires-at, --no-expiry)', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const k = await buildApiKey(d, member, { name: 'before', scopes: ['sessions:read', 'credits:read'] });
    const j = await admin(
      [
        'keys',
        'update',
        k.id,
        '--name',
        'after',
        '--scopes',
        'sessions:read',
        '--rate-limit',
        '42',
        '--expires-at',
        '2099-01-31',
        '--json',
      ],
      root,
    );
    expect(j.code, j.stderr).to.equal(0);
    expect(j.json.api_key).to.include({
      id: k.id,
      name: 'after',
      rate_limit_per_hour: 42,
      expires_at: '2099-01-31T00:00:00.000Z',
    });
    expect(j.json.api_key.scopes).to.deep.equal(['sessions:read']);
    const t = await admin(['keys', 'update', k.id, '--no-expiry'], root);
    expect(t.code, t.stderr).to.equal(0);
    expect(t.stdout)
      .to.match(/^ID\s+USER_ID\s+NAME/)
      .and.include('after');
    const row = await d.container.database.db
      .selectFrom('api_keys')
      .selectAll()
      .where('id', '=', k.id)
      .executeTakeFirstOrThrow();
    expect(row.expires_at).to.equal(null);
    expect(row.rate_limit_per_hour).to.equal(42);
  });

  it('keys update: usage errors exit 2 before connecting; escalation and out-of-reach keys exit 1', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const k = await buildApiKey(d, member, { scopes: ['sessions:read'] });
    const nothing = await admin(['keys', 'update', k.id], root);
    expect(nothing.code).to.equal(2);
    expect(nothing.stderr).to.include('nothing to change');
    expect((await admin(['keys', 'update', k.id, '--expires-at', '2099-01-01', '--no-expiry'], root)).code).to.equal(2);
    expect((await admin(['keys', 'update', k.id, '--scopes', 'root'], root)).code).to.equal(2);
    const escalate = await admin(['keys', 'update', k.id, '--scopes', 'admin'], root);
    expect(escalate.code).to.equal(1);
    expect(escalate.stderr).to.include('INSUFFICIENT_SCOPE');
    const theirs = await buildApiKey(d, outsider);
    const far = await admin(['keys', 'update', theirs.id, '--name', 'x'], tenantAdmin);
    expect(far.code).to.equal(1);
    expect(far.stderr).to.include('NOT_FOUND');
  });

  it('keys roll ID prints the new key once; the old one works for --grace, or stops at once with --grace 0', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const k = await buildApiKey(d, member, { name: 'rolled' });
    const j = await admin(['keys', 'roll', k.id, '--grace', '90m', '--json'], tenantAdmin);
    expect(j.code, j.stderr).to.equal(0);
    expect(j.json.key).to.match(/^ak_live_/);
    expect(j.json.api_key.id).to.equal(k.id);
    const grace = Date.parse(j.json.previous_expires_at) - Date.parse(j.json.api_key.rolled_at);
    expect(grace).to.equal(90 * 60_000);
    expect((await d.api.get('/v1/me', { apiKey: k.key })).status).to.equal(200);
    expect((await d.api.get('/v1/me', { apiKey: j.json.key })).body.api_key_id).to.equal(k.id);

    const t = await admin(['keys', 'roll', k.id, '--grace', '0'], root);
    expect(t.code, t.stderr).to.equal(0);
    const printed = /key: (ak_live_\S+)/.exec(t.stdout)?.[1];
    expect(printed).to.be.a('string');
    expect(t.stderr).to.include('shown only once').and.include('stopped working');
    expect((await d.api.get('/v1/me', { apiKey: printed! })).status).to.equal(200);
    // The second roll had no grace: the first roll's key stops at once, and the original too.
    expect((await d.api.get('/v1/me', { apiKey: j.json.key })).status).to.equal(401);
    expect((await d.api.get('/v1/me', { apiKey: k.key })).status).to.equal(401);
  });

  it('keys roll: a bad --grace is a usage error (exit 2); the default is 24h', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const k = await buildApiKey(d, member);
    for (const g of ['60', 'soon', '31d']) {
      const r = await admin(['keys', 'roll', k.id, '--grace', g], root);
      expect(r.code, g).to.equal(2);
      expect(r.stderr).to.include('--grace');
    }
    expect((await d.api.get('/v1/me', { apiKey: k.key })).status, 'nothing was rolled').to.equal(200);
    const j = await admin(['keys', 'roll', k.id, '--json'], root);
    expect(j.code, j.stderr).to.equal(0);
    expect(Date.parse(j.json.previous_expires_at) - Date.parse(j.json.api_key.rolled_at)).to.equal(86_400_000);
  });
});
