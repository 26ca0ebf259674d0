import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { describeStorage } from '../helpers/backends.js';
import { makeHome, spawnDaemon, type ChildDaemon, type DaemonHome } from '../helpers/daemon.js';
import { prepareOutside } from '../helpers/outside.js';
import { waitForEnd } from '../helpers/sessions.js';
import { expectSessionsEndedClean } from '../helpers/fleet.js';
import { webhookReceiver } from '../helpers/webhooks.js';

/** Sandboxes and example agents running on this machine (the suite runs one daemon at a time). */
function agentProcesses(): string[] {
  try {
    return execFileSync('pgrep', ['-f', '^bwrap |examples/agent/agent.js'], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

const prepare = (home: DaemonHome) =>
  prepareOutside(home, {
    label: 'crash',
    tier: 'team',
    micros: 20_000_000,
    scopes: ['agents:execute', 'sessions:read', 'credits:read'],
  });

describeStorage('a daemon killed while its agent runs', (backend) => {
  let home: DaemonHome;
  let d: ChildDaemon | undefined;
  afterEach(async () => {
    await d?.cleanup();
    await home?.cleanup();
  });

  it('after restart the session is interrupted, charged what it used, nothing held, verify clean', async function () {
    this.timeout(90_000);
    home = await makeHome({ backend });
    const { database, ledger, user, token } = await prepare(home);
    try {
      d = await spawnDaemon({ backend, home, config: { credits: { reservation_ttl_seconds: 60 } } });
      const r = await d.api.post(
        '/v1/agents/execute',
        {
          vision: 'A long job that will be cut short [slow:200] [iterations:200]',
          options: { costBudget: 5, maxIterations: 200 },
        },
        { token },
      );
      expect(r.status, r.text).to.equal(200);
      const id = r.body.session.id;
      // Let it use some credits first: the kill must come after usage was recorded, or the test proves nothing.
      let used = 0;
      for (let i = 0; i < 150 && used === 0; i++) {
        used = (await d.api.get(`/v1/sessions/${id}`, { token })).body.session.cost_so_far;
        if (used === 0) await new Promise((res) => setTimeout(res, 100));
      }
      expect(used, 'the agent reported no usage before the kill').to.be.greaterThan(0);
      await d.kill('SIGKILL');
      // Its agent died with it: the sandbox is bound to the daemon's life (bwrap --die-with-parent).
      let left = agentProcesses();
      for (let i = 0; i < 40 && left.length > 0; i++) {
        await new Promise((res) => setTimeout(res, 50));
        left = agentProcesses();
      }
      expect(left, 'agent processes left after kill -9 of the daemon').to.deep.equal([]);
      const held = await ledger.balance(user.id);
      expect(held.reserved).to.equal(5_000_000);
      d = await spawnDaemon({ backend, home });
      const end = await waitForEnd(d, { token }, id);
      expect(end.status).to.equal('interrupted');
      expect(end.end_reason).to.equal('gateway_restart');
      expect(end.final_cost).to.equal(end.cost_so_far);
      // Charged at least what was recorded before the kill: a crashed daemon's sessions are never free.
      expect(end.final_cost).to.be.at.least(used);
      const b = await ledger.balance(user.id);
      expect(b.reserved).to.equal(0);
      expect(b.balance).to.equal(20_000_000 - Math.round(end.final_cost * 1_000_000));
      expect(await ledger.verify()).to.deep.equal([]);
      const events = (await d.api.get(`/v1/sessions/${id}/events`, { token })).body.events;
      expect(events[events.length - 1].data.status).to.equal('interrupted');
      await expectSessionsEndedClean(database, ledger, [id]);
    } finally {
      await database.close();
    }
  });

  it("when the daemon never comes back, another daemon's reaper settles the session once its lease runs out", async function () {
    this.timeout(90_000);
    home = await makeHome({ backend });
    const { database, ledger, user, token } = await prepare(home);
    let other: DaemonHome | undefined;
    let hooks: Awaited<ReturnType<typeof webhookReceiver>> | undefined;
    try {
      hooks = await webhookReceiver();
      d = await spawnDaemon({ backend, home, config: { credits: { reservation_ttl_seconds: 5 } } });
      const r = await d.api.post(
        '/v1/agents/execute',
        {
          vision: 'A long job on a daemon that will die [slow:200] [iterations:200]',
          options: { costBudget: 5 },
          webhook_url: hooks.url,
        },
        { token },
      );
      expect(r.status, r.text).to.equal(200);
      const id = r.body.session.id;
      await new Promise((res) => setTimeout(res, 800));
      await d.kill('SIGKILL');
      other = await makeHome({ backend, databaseUrl: home.databaseUrl, jwtSecret: home.jwtSecret });
      d = await spawnDaemon({
        backend,
        home: other,
        config: { credits: { reservation_ttl_seconds: 5, reaper_interval_seconds: 1 } },
      });
      const end = await waitForEnd(d, { token }, id, 40_000);
      expect(end.status).to.equal('interrupted');
      expect(end.end_reason).to.equal('lease_expired');
      const b = await ledger.balance(user.id);
      expect(b.reserved).to.equal(0);
      expect(b.balance).to.equal(20_000_000 - Math.round(end.final_cost * 1_000_000));
      // The reaper's end has its final event, audit entry and webhook, like any other end.
      await expectSessionsEndedClean(database, ledger, [id]);
      for (let i = 0; i < 100 && hooks.received.length === 0; i++) await new Promise((res) => setTimeout(res, 100));
      expect(hooks.received.map((h) => JSON.parse(h.body).type)).to.deep.equal(['session.interrupted']);
    } finally {
      await hooks?.close();
      await d?.cleanup();
      d = undefined;
      if (other) {
        rmSync(other.dataDir, { recursive: true, force: true });
      }
      await database.close();
    }
  });
});
