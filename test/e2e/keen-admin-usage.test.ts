import { expect } from 'chai';
import { describeStorage } from '../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { runAdmin } from '../helpers/cli.js';
import { buildApiKey, buildTenant, buildUser, mintToken, platformAdmin, type TestUser } from '../helpers/factories.js';
import { execute, grant, waitForEnd } from '../helpers/sessions.js';

const admin = (args: string[], env: Record<string, string> = {}) => runAdmin(args, { env });

/** Each CLI run is a fresh Node process: allow for a busy machine. */
const SPAWN_TIMEOUT = 120_000;

describeStorage('keen-admin usage against a real daemon', (backend) => {
  let d: TestDaemon;
  let env: Record<string, string>;
  let tenantEnv: Record<string, string>;
  let root: string;
  let tenantB: string;
  let ana: TestUser;
  let ben: TestUser;
  const until = () => new Date(Date.now() + 60_000).toISOString();

  before(async function () {
    this.timeout(SPAWN_TIMEOUT);
    d = await startDaemon({ backend, logLevel: 'warn' });
    const rootUser = await buildUser(d, { role: 'admin', tier: 'enterprise' });
    root = mintToken(d, await platformAdmin(d));
    env = { KEEN_URL: d.url, KEEN_API_KEY: (await buildApiKey(d, rootUser, { name: 'ops' })).key };
    const tenantA = await buildTenant(d, 'Initech');
    tenantB = await buildTenant(d, 'Hooli');
    const adminA = await buildUser(d, { role: 'admin', tenantId: tenantA });
    tenantEnv = { KEEN_URL: d.url, KEEN_API_KEY: (await buildApiKey(d, adminA, { name: 'tenant ops' })).key };
    ana = await buildUser(d, { tenantId: tenantA, tier: 'team' });
    ben = await buildUser(d, { tenantId: tenantA, tier: 'team' });
    await grant(d, ana, 10);
    await grant(d, ben, 3);
    for (const [u, vision] of [
      [ana, 'Build a thing for ana [iterations:4]'],
      [ben, 'Build a thing for ben [iterations:1]'],
    ] as const) {
      const r = await execute(d, u, vision, { costBudget: 1 });
      expect(r.status, r.text).to.equal(200);
      await waitForEnd(d, u, r.body.session.id);
      await d.container.supervisor.settled(r.body.session.id);
    }
  });
  after(async () => d?.stop());

  it('--json prints the API document; --csv the API CSV, byte for byte', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const u = until();
    const api = await d.api.get(`/v1/admin/usage?group_by=user&since=1d&until=${encodeURIComponent(u)}`, {
      token: root,
    });
    const apiCsv = await d.api.get(`/v1/admin/usage?group_by=user&since=1d&until=${encodeURIComponent(u)}&format=csv`, {
      token: root,
    });
    const [j, c] = await Promise.all([
      admin(['usage', '--by', 'user', '--since', '1d', '--until', u, '--json'], env),
      admin(['usage', '--by', 'user', '--since', '1d', '--until', u, '--csv'], env),
    ]);
    expect(j.code, j.stderr).to.equal(0);
    // `since` is relative: the CLI's request came a moment later.
    expect({ ...j.json, since: null }).to.deep.equal({ ...api.body, since: null });
    expect(j.json.rows.map((r: { email: string }) => r.email)).to.include.members([ana.email, ben.email]);
    expect(c.code, c.stderr).to.equal(0);
    expect(c.stdout).to.equal(apiCsv.text);
    expect(c.stdout.split('\n')[0]).to.equal(
      'user_id,email,charged,refunded,adjusted,granted,net,sessions,input_tokens,output_tokens,web_searches',
    );
  });

  it('prints a table with a bar per row scaled to the largest charge, and a TOTAL line', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const t = await admin(['usage', '--by', 'user', '--since', '1d', '--until', until()], env);
    expect(t.code, t.stderr).to.equal(0);
    const lines = t.stdout.trimEnd().split('\n');
    expect(lines[0]).to.match(
      /^USER_ID\s+EMAIL\s+CHARGED\s+REFUNDED\s+ADJUSTED\s+GRANTED\s+NET\s+SESSIONS\s+INPUT_TOKENS\s+OUTPUT_TOKENS\s+CHARGED_BAR$/,
    );
    const anaLine = lines.find((l) => l.includes(ana.email))!;
    const benLine = lines.find((l) => l.includes(ben.email))!;
    // Ana spent the most (4 iterations): the full 30-character bar (stdout is not a terminal).
    expect(anaLine).to.match(/\s█{30}$/);
    const benBar = /\s([█▏▎▍▌▋▊▉]+)$/.exec(benLine)![1]!;
    expect(benBar.length).to.be.greaterThan(0).and.below(30);
    expect(lines.at(-1)).to.match(/^TOTAL\s/);
    expect(t.stderr).to.include('(UTC)');
    const byDay = await admin(['usage', '--since', '7d'], env);
    expect(byDay.code, byDay.stderr).to.equal(0);
    expect(byDay.stdout).to.include(new Date().toISOString().slice(0, 10));
  });

  it('a tenant admin sees its tenant; another tenant is NOT_FOUND (exit 1); bad options exit 2 before any request', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const [mine, other, week, since, both] = await Promise.all([
      admin(['usage', '--by', 'tenant', '--json'], tenantEnv),
      admin(['usage', '--tenant', tenantB], tenantEnv),
      admin(['usage', '--by', 'week'], env),
      admin(['usage', '--since', 'yesterday'], env),
      admin(['usage', '--csv', '--json'], env),
    ]);
    expect(mine.code, mine.stderr).to.equal(0);
    expect(mine.json.rows.map((r: { tenant_name: string }) => r.tenant_name)).to.deep.equal(['Initech']);
    expect(other.code).to.equal(1);
    expect(other.stderr).to.include('NOT_FOUND');
    for (const r of [week, since, both]) {
      expect(r.code, r.stderr).to.equal(2);
      expect(r.stdout).to.equal('');
    }
  });
});
