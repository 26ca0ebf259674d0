import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { IN_CI, TEST_REDIS_URL } from '../../helpers/env.js';
import { buildApiKey, buildUser } from '../../helpers/factories.js';
import { execute, grant, waitForEnd } from '../../helpers/sessions.js';
import { DEFAULT_METRICS_DROPPED } from '../../../daemon/metrics.js';
import type { Monitoring } from '../../../daemon/monitoring/index.js';
import { ensureMonitoring } from './support.js';

/** promtool, if it is on PATH (CI installs Debian's prometheus package, see .ci/run). */
function findPromtool(): string | null {
  const r = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  return r.error ? null : 'promtool';
}

/**
 * `promtool check metrics` lints an exposition the way Prometheus' own tooling
 * does: counters end in `_total` and nothing else does, every family has HELP,
 * units are base units, and so on. A live daemon's /metrics, prom-client's
 * default process metrics included, must pass with no complaint at all.
 */
describe('GET /metrics passes `promtool check metrics`', function () {
  this.timeout(60_000);
  const promtool = findPromtool();
  let d: TestDaemon | undefined;
  let monitoring: { monitoring: Monitoring; owned: boolean } | null = null;

  before(async function () {
    if (!promtool) {
      // CI installs it and fails rather than skipping; a laptop without it skips, loudly.
      if (IN_CI) throw new Error("promtool is missing: install Debian's prometheus package (.ci/run does)");
      process.stderr.write('\n!! promtool is not on PATH: skipping the `promtool check metrics` suite\n');
      this.skip();
    }
    d = await startDaemon({ logLevel: 'warn', defaultMetrics: true, shared: TEST_REDIS_URL ? 'redis' : 'memory' });
    monitoring = ensureMonitoring(d);
    // Enough traffic that the labelled families have series to lint.
    const u = await buildUser(d, { withPassword: true, tier: 'team' });
    const key = await buildApiKey(d, u);
    await grant(d, u, 50);
    await d.api.get('/health/live');
    await d.api.get('/health/ready');
    await d.api.get('/no/such/route');
    await d.api.post('/v1/auth/login', { email: u.email, password: 'wrong-password-123' });
    const login = await d.api.post('/v1/auth/login', { email: u.email, password: u.password });
    expect(login.status).to.equal(200);
    await d.api.post('/v1/auth/refresh', { refresh_token: login.body.tokens.refresh_token });
    await d.api.get('/v1/me', { token: u.token });
    await d.api.get('/v1/credits/balance', { apiKey: key.key });
    await d.api.get('/v1/me');
    await d.api.post('/v1/agents/quote', { vision: 'Build a small todo app with tests' }, { token: u.token });
    const run = await execute(d, u, 'Build a small todo app with tests', { maxIterations: 2, costBudget: 1 });
    expect(run.status, run.text).to.equal(200);
    await waitForEnd(d, u, run.body.session.id);
    await monitoring.monitoring.ledgerDrift.tick();
    await monitoring.monitoring.redisProbe.tick();
  });

  after(async () => {
    if (monitoring?.owned) await monitoring.monitoring.stop();
    await d?.stop();
  });

  it('reports no problem', async () => {
    const r = await d!.api.get('/metrics');
    expect(r.status).to.equal(200);
    // The default metrics are on: the suite must lint them too.
    expect(r.text).to.include('keen_process_cpu_seconds_total');
    expect(r.text).to.include('# TYPE keen_nodejs_active_handles gauge');
    // prom-client's gauges named like counters are not exported (their per-type siblings are).
    for (const name of DEFAULT_METRICS_DROPPED) expect(r.text).to.not.include(`# TYPE ${name} `);
    const check = spawnSync(promtool!, ['check', 'metrics'], { input: r.text, encoding: 'utf8' });
    expect(check.error).to.equal(undefined);
    expect(`${check.stdout}${check.stderr}`.trim(), 'promtool check metrics').to.equal('');
    expect(check.status).to.equal(0);
  });
});
