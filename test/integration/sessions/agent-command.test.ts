import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describeStorage } from '../../helpers/backends.js';
import {
  makeHome,
  spawnDaemon,
  startDaemon,
  type ChildDaemon,
  type DaemonHome,
  type TestDaemon,
} from '../../helpers/daemon.js';
import { buildUser } from '../../helpers/factories.js';
import { execute, expectLedgerClean, grant, waitForEnd } from '../../helpers/sessions.js';
import { bootstrapAdmin, userWithKey } from '../limits/support.js';

/**
 * An agent that writes a few lines to stderr (a colour code, a secret-looking value among them) and
 * exits 1. A shell script, not Node: a Node child of a test run under c8 inherits NODE_V8_COVERAGE and,
 * inside the sandbox, adds its own "cannot write coverage" line to stderr at exit.
 */
const FAILING_AGENT = `#!/bin/sh
cat > /dev/null
i=1
while [ "$i" -le 25 ]; do echo "noise $i" >&2; i=$((i + 1)); done
printf '\\033[31mError: cannot find module "left-pad"\\033[0m\\n' >&2
echo 'JWT_SECRET=should-not-show' >&2
exit 1
`;

describeStorage('a failing agent shows why on its session', (backend) => {
  let d: TestDaemon;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'keen-failing-agent-'));
    writeFileSync(path.join(dir, 'agent.sh'), FAILING_AGENT, { mode: 0o755 });
    d = await startDaemon({ backend, config: { agent: { command: ['/bin/sh', path.join(dir, 'agent.sh')] } } });
  });
  after(async () => {
    await d?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('ends failed with the last stderr lines in its summary and final event, control characters and secrets removed', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 10);
    const r = await execute(d, u, 'Build a small todo application', { maxIterations: 1 });
    expect(r.status, r.text).to.equal(200);
    await waitForEnd(d, u, r.body.session.id);
    const got = await d.api.get(`/v1/sessions/${r.body.session.id}`, { token: u.token });
    const s = got.body.session;
    expect(s).to.include({ status: 'failed', end_reason: 'agent_exit_1' });
    const lines = (s.summary as string).split('\n');
    expect(lines[0]).to.equal('agent stderr (last lines):');
    expect(lines.slice(1)).to.have.length(20);
    expect(lines.slice(-2)).to.deep.equal(['Error: cannot find module "left-pad"', 'JWT_SECRET=***']);
    expect(lines[1]).to.equal('noise 8');
    expect(s.summary).not.to.include('should-not-show').and.not.to.include('\u001b');
    const ev = await d.api.get(`/v1/sessions/${s.id}/events`, { token: u.token });
    const last = ev.body.events[ev.body.events.length - 1];
    expect(last.data).to.include({ status: 'failed', reason: 'agent_exit_1', summary: s.summary });
    await expectLedgerClean(d);
  });
});

describeStorage('agent.command checked at start', (backend) => {
  it('warns outside production, and a session of a missing agent ends failed saying why', async () => {
    const d = await startDaemon({ backend, config: { agent: { command: ['/nonexistent/keen-agent', '--x'] } } });
    try {
      expect(d.logs.join(''))
        .to.include('agent.command cannot run')
        .and.include('/nonexistent/keen-agent does not exist or is not executable');
      const u = await buildUser(d, { tier: 'team' });
      await grant(d, u, 10);
      const r = await execute(d, u, 'Build a small todo application', { maxIterations: 1 });
      expect(r.status, r.text).to.equal(200);
      const end = await waitForEnd(d, u, r.body.session.id);
      expect(end.status).to.equal('failed');
      expect(end.end_reason).to.match(/^(agent_not_started|agent_exit_\d+)$/);
      expect(end.summary).to.include('/nonexistent/keen-agent');
      await expectLedgerClean(d);
    } finally {
      await d.stop();
    }
  });

  it('refuses to start in production, naming agent.command', async () => {
    let error: unknown;
    try {
      const d = await startDaemon({
        backend,
        config: { env: 'production', agent: { command: ['node', '/nonexistent/agent.js'] } },
      });
      await d.stop();
    } catch (err) {
      error = err;
    }
    expect(error, 'the daemon started').to.be.instanceOf(Error);
    expect((error as Error).message).to.include('agent.command: the script /nonexistent/agent.js does not exist');
  });
});

describe('a config file without agent.command, in another folder (keen-gateway start)', function () {
  this.timeout(60_000);
  let d: ChildDaemon;
  let home: DaemonHome;
  let adminKey: string;
  // spawnDaemon writes the file into the data dir, outside the package (the daemon's cwd is the package).
  before(async () => {
    home = await makeHome({});
    adminKey = await bootstrapAdmin(home.databaseUrl);
    d = await spawnDaemon({ home, config: { agent: { command: undefined } } });
  });
  after(async () => {
    await d?.cleanup();
    await home?.cleanup();
  });

  it('runs the built-in default agent', async () => {
    const configFile = readFileSync(path.join(home.dataDir, 'gateway.yaml'), 'utf8');
    expect(configFile).not.to.include('command');
    expect(d.stdout.join('')).not.to.include('agent.command cannot run');
    const u = await userWithKey(d.api, adminKey, { tier: 'team' });
    const g = await d.api.post(
      '/v1/admin/credits/grant',
      { user_id: u.userId, amount: 10, reason: 'test' },
      { apiKey: adminKey },
    );
    expect(g.status, g.text).to.be.oneOf([200, 201]);
    const r = await d.api.post(
      '/v1/agents/execute',
      { vision: 'Build a small todo application', options: { maxIterations: 1 } },
      { apiKey: u.key },
    );
    expect(r.status, r.text).to.equal(200);
    const end = await waitForEnd(d, { apiKey: u.key }, r.body.session.id);
    expect(end, JSON.stringify(end)).to.include({ status: 'completed', end_reason: 'completed' });
  });
});
