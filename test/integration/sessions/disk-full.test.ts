/**
 * A running session while the disk under SQLite fills up and frees again (a
 * real tmpfs): the agent's events and its outcome wait for space instead of
 * being lost, in order, and the session ends as the agent said.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { canMount, describeRoot, fill, mountTmpfs } from '../../helpers/disk.js';
import { buildUser } from '../../helpers/factories.js';
import { expectSessionsEndedClean } from '../../helpers/fleet.js';
import { execute, grant, waitForEnd } from '../../helpers/sessions.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeRoot('sessions: the disk under SQLite full while an agent runs [sqlite, tmpfs]', function () {
  this.timeout(60_000);
  let fs: { dir: string; unmount(): void } | undefined;
  let workspaces: string;
  let d: TestDaemon;

  before(async () => {
    if (!canMount) throw new Error('mounting a tmpfs needs root: CI runs as root');
    fs = mountTmpfs(24);
    // The agent's own files live elsewhere: only the gateway's storage runs out of space.
    workspaces = mkdtempSync(path.join(tmpdir(), 'keen-ws-'));
    d = await startDaemon({
      databaseUrl: `sqlite:${path.join(fs.dir, 'keen.db')}`,
      config: { data_dir: fs.dir, workspaces: { root: workspaces }, server: { min_free_disk_mb: 0 } },
    });
  });
  after(async () => {
    await d?.stop();
    fs?.unmount();
    rmSync(workspaces, { recursive: true, force: true });
  });

  it('loses no event and no outcome: everything is stored once space is back, in order, and the session completes', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 20);
    const steps = 20;
    const r = await execute(d, u, `Work on while the disk fills up [slow:100] [iterations:${steps}]`, {
      maxIterations: steps,
      costBudget: 5,
    });
    expect(r.status, r.text).to.equal(200);
    const id = r.body.session.id as string;
    for (let i = 0; i < 100; i++) {
      const s = await d.api.get(`/v1/sessions/${id}`, { token: u.token });
      if (s.body.session.cost_so_far > 0) break;
      await sleep(25);
    }
    const filler = path.join(fs!.dir, 'filler.bin');
    fill(filler, 0);
    // The agent goes on (and finishes) while nothing can be stored.
    await sleep(3000);
    expect(d.logs.join('')).to.include('storage unavailable: retrying the write');
    unlinkSync(filler);
    const end = await waitForEnd(d, u, id, 30_000);
    expect(end.status).to.equal('completed');
    const events = (await d.api.get(`/v1/sessions/${id}/events?limit=500`, { token: u.token })).body.events as Array<{
      type: string;
      data: Record<string, unknown>;
    }>;
    const progress = events.filter((e) => e.type === 'agent.progress').map((e) => e.data.message);
    for (let i = 1; i <= steps; i++) expect(progress, `step ${i}`).to.include(`step ${i} of ${steps}`);
    expect(events.filter((e) => e.type === 'cost.update')).to.have.length(steps);
    expect(end.final_cost).to.equal(end.cost_so_far);
    await expectSessionsEndedClean(d.container.database, d.container.ledger, [id]);
  });
});
