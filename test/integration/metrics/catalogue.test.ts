import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../../../daemon/paths.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { TEST_REDIS_URL } from '../../helpers/env.js';
import { buildApiKey, buildUser } from '../../helpers/factories.js';
import { execute, grant, waitForEnd } from '../../helpers/sessions.js';
import type { Monitoring } from '../../../daemon/monitoring/index.js';
import { ensureMonitoring, parseExposition, readCatalogue, suspiciousLabelValue, type Scrape } from './support.js';

/**
 * docs/METRICS.md is the catalogue: every metric it lists must be on a real
 * daemon's /metrics after ordinary traffic, with the stated type, help and
 * labels; every keen_ metric the daemon exports must be listed; and no label
 * value may look like a user, a tenant, an email or a credential.
 */
describe('metrics catalogue (docs/METRICS.md against GET /metrics)', function () {
  this.timeout(60_000);
  let d: TestDaemon;
  let monitoring: { monitoring: Monitoring; owned: boolean } | null = null;
  let scrape: Scrape;
  let raw: string;
  const catalogue = readCatalogue();

  before(async () => {
    d = await startDaemon({ logLevel: 'warn', shared: TEST_REDIS_URL ? 'redis' : 'memory' });
    monitoring = ensureMonitoring(d);
    const u = await buildUser(d, { withPassword: true, tier: 'team' });
    const key = await buildApiKey(d, u);
    await grant(d, u, 50);

    // Public endpoints, a 404, sign-in (good and bad), refresh.
    await d.api.get('/health/live');
    await d.api.get('/health/ready');
    await d.api.get('/no/such/route');
    await d.api.post('/v1/auth/login', { email: u.email, password: 'wrong-password-123' });
    const login = await d.api.post('/v1/auth/login', { email: u.email, password: u.password });
    expect(login.status).to.equal(200);
    await d.api.post('/v1/auth/refresh', { refresh_token: login.body.tokens.refresh_token });
    // Authenticated reads with both credentials, and the failures.
    expect((await d.api.get('/v1/me', { token: u.token })).status).to.equal(200);
    expect((await d.api.get('/v1/credits/balance', { apiKey: key.key })).status).to.equal(200);
    await d.api.get('/v1/me', { token: 'not.a.jwt' });
    await d.api.get('/v1/me', { headers: { authorization: 'Basic abc' } });
    await d.api.get('/v1/me');
    await d.api.get(`/v1/sessions/ses_${'0'.repeat(26)}`, { token: u.token });
    // A quote and one agent run to its end.
    await d.api.post('/v1/agents/quote', { vision: 'Build a small todo app with tests' }, { token: u.token });
    const run = await execute(d, u, 'Build a small todo app with tests', { maxIterations: 2, costBudget: 1 });
    expect(run.status, run.text).to.equal(200);
    await waitForEnd(d, u, run.body.session.id);
    // The ledger drift job, once.
    const drift = d.container.metrics.registry.getSingleMetric('keen_ledger_drift_accounts');
    expect(drift).to.not.equal(undefined);
    expect(await monitoring.monitoring.ledgerDrift.tick()).to.equal(0);
    await monitoring.monitoring.redisProbe.tick();

    const r = await d.api.get('/metrics');
    expect(r.status).to.equal(200);
    raw = r.text;
    scrape = parseExposition(raw);
  });

  after(async () => {
    if (monitoring?.owned) await monitoring.monitoring.stop();
    await d?.stop();
  });

  it('parses the catalogue (at least the documented families)', () => {
    expect(catalogue.length).to.be.greaterThan(30);
    expect(new Set(catalogue.map((e) => e.name)).size).to.equal(catalogue.length);
  });

  it('every catalogued metric is exported with its type and help text', () => {
    const problems: string[] = [];
    for (const e of catalogue) {
      if (!scrape.type.has(e.name)) problems.push(`${e.name}: missing from /metrics`);
      else if (scrape.type.get(e.name) !== e.type)
        problems.push(`${e.name}: type ${scrape.type.get(e.name)}, catalogue says ${e.type}`);
      else if (scrape.help.get(e.name) !== e.help)
        problems.push(`${e.name}: help "${scrape.help.get(e.name)}", catalogue says "${e.help}"`);
    }
    expect(problems).to.deep.equal([]);
  });

  it('every sample carries exactly the catalogued labels', () => {
    const byName = new Map(catalogue.map((e) => [e.name, e]));
    const problems = new Set<string>();
    for (const s of scrape.samples) {
      const e = byName.get(s.family);
      if (!e) continue;
      const names = Object.keys(s.labels)
        .filter((l) => !(e.type === 'histogram' && l === 'le'))
        .sort();
      if (names.join(',') !== e.labels.join(','))
        problems.add(`${s.family}: labels [${names}] but catalogue says [${e.labels}]`);
    }
    expect([...problems]).to.deep.equal([]);
  });

  it('every keen_ metric the daemon exports is in the catalogue (default process metrics aside)', () => {
    const listed = new Set(catalogue.map((e) => e.name));
    const unlisted = [...scrape.type.keys()].filter(
      (n) => n.startsWith('keen_') && !/^keen_(process|nodejs)_/.test(n) && !listed.has(n),
    );
    expect(unlisted, 'add these to docs/METRICS.md').to.deep.equal([]);
  });

  it('no label value looks like an id, an email or a key', () => {
    const bad = scrape.samples.flatMap((s) =>
      Object.entries(s.labels).flatMap(([k, v]) => {
        const why = suspiciousLabelValue(v);
        return why ? [`${s.name}{${k}="${v}"}: ${why}`] : [];
      }),
    );
    expect(bad).to.deep.equal([]);
    // The traffic above did carry such values: make sure the check could have seen them.
    expect(raw).to.include('route="/v1/sessions/:id"');
    expect(raw).to.not.include('ses_0000');
  });

  it('the traffic shows in the series operators alert on', () => {
    const value = (family: string, labels: Record<string, string>) =>
      scrape.samples
        .filter((s) => s.name === family && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
        .reduce((a, s) => a + s.value, 0);
    expect(value('keen_auth_attempts_total', { method: 'jwt', outcome: 'success' })).to.be.greaterThan(0);
    expect(value('keen_auth_attempts_total', { method: 'api_key', outcome: 'success' })).to.be.greaterThan(0);
    expect(value('keen_auth_attempts_total', { method: 'jwt', outcome: 'invalid_token' })).to.be.greaterThan(0);
    expect(value('keen_auth_attempts_total', { method: 'none', outcome: 'missing_token' })).to.equal(1);
    expect(value('keen_auth_attempts_total', { method: 'none', outcome: 'invalid_token_format' })).to.equal(1);
    expect(value('keen_auth_attempts_total', { method: 'password', outcome: 'invalid_credentials' })).to.equal(1);
    expect(value('keen_auth_attempts_total', { method: 'password', outcome: 'success' })).to.equal(1);
    expect(value('keen_auth_attempts_total', { method: 'refresh', outcome: 'success' })).to.equal(1);
    const backend = d.container.database.dialect;
    expect(
      value('keen_database_query_duration_seconds_count', { backend, operation: 'transaction' }),
    ).to.be.greaterThan(0);
    expect(value('keen_database_query_duration_seconds_count', { backend, operation: 'ping' })).to.be.greaterThan(0);
    expect(value('keen_dependency_up', { dependency: 'database' })).to.equal(1);
    if (TEST_REDIS_URL) {
      expect(value('keen_dependency_up', { dependency: 'redis' })).to.equal(1);
      expect(value('keen_redis_ping_duration_seconds_count', {})).to.be.greaterThan(0);
    }
    expect(value('keen_ledger_drift_accounts', {})).to.equal(0);
    expect(value('keen_credit_reservations_expired_open', {})).to.equal(0);
    expect(value('keen_executes_total', { outcome: 'accepted' })).to.equal(1);
    expect(value('keen_http_requests_total', { route: 'unmatched', status: '404' })).to.equal(1);
  });

  it('the alerting rules and the Grafana dashboard only use catalogued series', () => {
    const listed = new Set(catalogue.map((e) => e.name));
    for (const file of ['deploy/prometheus/alerts.yml', 'deploy/grafana/keen-gateway.json']) {
      const text = readFileSync(path.join(PROJECT_ROOT, file), 'utf8');
      const used = new Set(
        [...text.matchAll(/\bkeen_[a-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, '')),
      );
      const unknown = [...used].filter((n) => !listed.has(n) && !/^keen_(process|nodejs)_/.test(n));
      expect(unknown, file).to.deep.equal([]);
      expect(used.size, file).to.be.greaterThan(8);
    }
  });
});
