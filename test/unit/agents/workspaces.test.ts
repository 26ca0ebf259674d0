import { expect } from 'chai';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  lstatSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ManualClock } from '../../../daemon/clock.js';
import { newId } from '../../../daemon/ids.js';
import { createLogger } from '../../../daemon/logger.js';
import { WorkspaceManager, WorkspaceError } from '../../../daemon/agents/workspaces.js';

const DAY = 86_400_000;

describe('agents/workspaces', () => {
  let base: string;
  let clock: ManualClock;
  const logger = createLogger('silent');
  const manager = (root: string, retentionDays = 7): WorkspaceManager =>
    new WorkspaceManager({ root, retentionDays, clock, logger });

  beforeEach(() => {
    base = realpathSync(mkdtempSync(path.join(tmpdir(), 'keen-ws-')));
    clock = new ManualClock(Date.now());
  });
  afterEach(() => rmSync(base, { recursive: true, force: true }));

  it('creates the root (0700) and a 0700 workspace named only by the session id', async () => {
    const root = path.join(base, 'data', 'workspaces');
    const wm = manager(root);
    const id = newId('ses');
    const dir = await wm.create(id);
    expect(dir).to.equal(path.join(root, id));
    expect(path.isAbsolute(dir)).to.equal(true);
    expect(statSync(dir).isDirectory()).to.equal(true);
    expect(statSync(dir).mode & 0o777).to.equal(0o700);
    expect(statSync(root).mode & 0o777).to.equal(0o700);
    expect(wm.pathFor(id)).to.equal(dir);
    expect(path.relative(root, dir)).to.equal(id);
  });

  it('refuses ids that are not session ids before touching the file system', async () => {
    const wm = manager(path.join(base, 'ws'));
    for (const bad of [
      '../x',
      'ses_../../etc',
      `ses_${'a'.repeat(25)}/`,
      `ses_${'A'.repeat(26)}`,
      `ses_${'a'.repeat(25)}\0`,
      `usr_${'a'.repeat(26)}`,
      '',
      '.',
      '..',
    ]) {
      let err: unknown;
      try {
        await wm.create(bad);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(bad)).to.be.instanceOf(WorkspaceError);
      expect(() => wm.pathFor(bad)).to.throw(WorkspaceError);
    }
    expect(existsSync(path.join(base, 'ws'))).to.equal(false);
    expect(existsSync(path.join(base, 'x'))).to.equal(false);
  });

  it('fails on a second create of the same session', async () => {
    const wm = manager(path.join(base, 'ws'));
    const id = newId('ses');
    await wm.create(id);
    writeFileSync(path.join(wm.pathFor(id), 'keep.txt'), 'x');
    let err: NodeJS.ErrnoException | undefined;
    await wm.create(id).catch((e: NodeJS.ErrnoException) => (err = e));
    expect(err?.code).to.equal('EEXIST');
    expect(existsSync(path.join(wm.pathFor(id), 'keep.txt'))).to.equal(true);
  });

  it('refuses a symlink planted at the leaf and never follows it on remove', async () => {
    const root = path.join(base, 'ws');
    mkdirSync(root);
    const outside = path.join(base, 'outside');
    mkdirSync(outside);
    writeFileSync(path.join(outside, 'precious.txt'), 'x');
    const id = newId('ses');
    symlinkSync(outside, path.join(root, id));
    const wm = manager(root);

    let err: unknown;
    await wm.create(id).catch((e: unknown) => (err = e));
    expect(err).to.be.an('error');
    expect(readdirSync(outside)).to.deep.equal(['precious.txt']);

    expect(await wm.remove(id)).to.equal(true);
    expect(existsSync(path.join(root, id))).to.equal(false);
    expect(readdirSync(outside)).to.deep.equal(['precious.txt']);
  });

  it('resolves a symlinked root once and builds workspaces inside the real root', async () => {
    const real = path.join(base, 'real-root');
    mkdirSync(real);
    const link = path.join(base, 'link-root');
    symlinkSync(real, link);
    const wm = manager(link);
    expect(wm.root).to.equal(real);
    const id = newId('ses');
    const dir = await wm.create(id);
    expect(dir).to.equal(path.join(real, id));
    expect(lstatSync(dir).isDirectory()).to.equal(true);
  });

  it('refuses to create when the root was swapped for a symlink after start', async () => {
    const root = path.join(base, 'ws');
    mkdirSync(root);
    const wm = manager(root);
    rmSync(root, { recursive: true });
    mkdirSync(path.join(base, 'elsewhere'));
    symlinkSync(path.join(base, 'elsewhere'), root);
    let err: unknown;
    await wm.create(newId('ses')).catch((e: unknown) => (err = e));
    expect(err).to.be.instanceOf(WorkspaceError);
    expect(readdirSync(path.join(base, 'elsewhere'))).to.deep.equal([]);
  });

  it('remove deletes the whole tree (without following inner symlinks) and is false when absent', async () => {
    const wm = manager(path.join(base, 'ws'));
    const id = newId('ses');
    const dir = await wm.create(id);
    mkdirSync(path.join(dir, 'a', 'b'), { recursive: true });
    writeFileSync(path.join(dir, 'a', 'b', 'f.txt'), 'x');
    const outside = path.join(base, 'outside');
    mkdirSync(outside);
    writeFileSync(path.join(outside, 'precious.txt'), 'x');
    symlinkSync(outside, path.join(dir, 'escape'));
    expect(await wm.remove(id)).to.equal(true);
    expect(existsSync(dir)).to.equal(false);
    expect(readdirSync(outside)).to.deep.equal(['precious.txt']);
    expect(await wm.remove(id)).to.equal(false);
  });

  describe('sweep', () => {
    async function setup(
      retentionDays: number,
    ): Promise<{ wm: WorkspaceManager; oldDone: string; oldRunning: string; recent: string; root: string }> {
      const root = path.join(base, 'ws');
      const wm = manager(root, retentionDays);
      const [oldDone, oldRunning, recent] = [newId('ses'), newId('ses'), newId('ses')];
      for (const id of [oldDone, oldRunning, recent]) await wm.create(id);
      const old = new Date(clock.now() - 10 * DAY);
      utimesSync(wm.pathFor(oldDone), old, old);
      utimesSync(wm.pathFor(oldRunning), old, old);
      mkdirSync(path.join(root, 'not-a-session'));
      utimesSync(path.join(root, 'not-a-session'), old, old);
      return { wm, oldDone, oldRunning, recent, root };
    }

    it('removes only workspaces older than the retention whose session the callback says is finished', async () => {
      const { wm, oldDone, oldRunning, recent, root } = await setup(7);
      const asked: Array<[string, number]> = [];
      const removed = await wm.sweep(async (id, cutoff) => {
        asked.push([id, cutoff]);
        return id === oldDone;
      });
      expect(removed).to.deep.equal([oldDone]);
      expect(asked.map(([id]) => id).sort()).to.deep.equal([oldDone, oldRunning].sort());
      expect(asked[0]![1]).to.equal(clock.now() - 7 * DAY);
      expect(readdirSync(root).sort()).to.deep.equal(['not-a-session', oldRunning, recent].sort());
    });

    it('keeps everything with retention 0 and follows the clock', async () => {
      const { wm } = await setup(0);
      let calls = 0;
      expect(await wm.sweep(async () => (calls++, true))).to.deep.equal([]);
      expect(calls).to.equal(0);

      const { wm: wm7, recent } = await (async () => {
        rmSync(path.join(base, 'ws'), { recursive: true });
        return setup(7);
      })();
      clock.advance(30 * DAY);
      const removed = await wm7.sweep(async () => true);
      expect(removed).to.have.length(3);
      expect(removed).to.include(recent);
    });

    it('skips an entry whose callback fails and goes on', async () => {
      const { wm, oldDone, oldRunning } = await setup(7);
      const removed = await wm.sweep(async (id) => {
        if (id === oldRunning) throw new Error('db down');
        return true;
      });
      expect(removed).to.deep.equal([oldDone]);
    });

    it('does nothing when the root does not exist yet', async () => {
      expect(await manager(path.join(base, 'none')).sweep(async () => true)).to.deep.equal([]);
    });
  });
});
