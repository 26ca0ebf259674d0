import { expect } from 'chai';
import { existsSync, utimesSync } from 'node:fs';
import path from 'node:path';
import { WorkspaceJanitor } from '../../../daemon/sessions/workspace-janitor.js';
import { createLogger } from '../../../daemon/logger.js';
import { SessionRepository } from '../../../daemon/storage/repos/sessions.js';
import { ManualClock } from '../../../daemon/clock.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildUser } from '../../helpers/factories.js';
import { execute, grant, waitForEnd } from '../../helpers/sessions.js';

describe('workspace retention', () => {
  let d: TestDaemon;
  const clock = new ManualClock(Date.now());
  before(async () => {
    d = await startDaemon({ clock, config: { workspaces: { retention_days: 1 } } });
  });
  after(async () => d?.stop());

  it('removes the workspace of a session that ended before the retention, keeps the rest', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 10);
    const done = await waitForEnd(
      d,
      u,
      (await execute(d, u, 'A run whose files will expire', { costBudget: 1 })).body.session.id,
    );
    const running = (
      await execute(d, u, 'A run that keeps going for a while [slow:300] [iterations:100]', { costBudget: 1 })
    ).body.session.id;
    const dirDone = path.join(d.config.workspaces.root, done.id);
    const dirRunning = path.join(d.config.workspaces.root, running);
    for (let i = 0; i < 50 && !existsSync(dirRunning); i++) await new Promise((r) => setTimeout(r, 50));
    const old = (clock.now() - 3 * 86_400_000) / 1000;
    utimesSync(dirDone, old, old);
    utimesSync(dirRunning, old, old);
    clock.advance(2 * 86_400_000);
    const sessions = new SessionRepository(d.container.database.db);
    const janitor = new WorkspaceJanitor({
      workspaces: d.container.workspaces,
      sessions,
      logger: createLogger('silent'),
    });
    expect(await janitor.runOnce()).to.deep.equal([done.id]);
    expect(existsSync(dirDone)).to.equal(false);
    expect(existsSync(dirRunning)).to.equal(true);
    await d.api.post(`/v1/sessions/${running}/cancel`, {}, { token: u.token });
  });
});
