/**
 * Agents a killed daemon left behind: the runner records each agent's process
 * in `pidDir`, and the next start (`stopOrphans`) kills what is still running,
 * with real processes. Mocks nothing: the "previous daemon" is this test,
 * which starts the processes and writes their records as the runner does.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildPureRequest } from '../../../daemon/agents/pure-request.js';
import { processStart, ProcessRunner } from '../../../daemon/agents/process-runner.js';
import { processTree } from '../../../daemon/agents/limit-watch.js';
import { WorkspaceManager } from '../../../daemon/agents/workspaces.js';
import { systemClock } from '../../../daemon/clock.js';
import { newId } from '../../../daemon/ids.js';
import { createLogger } from '../../../daemon/logger.js';

const logger = createLogger('silent');

/** Running (not gone, not a zombie waiting to be reaped). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

async function until(check: () => boolean, ms = 3000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; ) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return check();
}

describe('agents: orphans of a killed daemon (real processes)', function () {
  this.timeout(30_000);
  let base: string;
  let pidDir: string;
  const started: ChildProcess[] = [];

  beforeEach(() => {
    base = realpathSync(mkdtempSync(path.join(tmpdir(), 'keen-orphans-')));
    pidDir = path.join(base, 'agents');
    mkdirSync(pidDir);
  });
  afterEach(() => {
    for (const c of started.splice(0)) {
      try {
        process.kill(-c.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }
    rmSync(base, { recursive: true, force: true });
  });

  const runner = () =>
    new ProcessRunner({
      command: ['true'],
      envPassthrough: [],
      timeoutMs: 10_000,
      killGraceMs: 200,
      logger,
      baseEnv: { PATH: process.env.PATH },
      workspacesRoot: base,
      pidDir,
    });

  /** An "agent" in its own group, with a child in the group and a grandchild that left it (setsid). */
  async function leftBehind(): Promise<{ agent: number; family: number[] }> {
    const child = spawn('sh', ['-c', 'sleep 300 & setsid sleep 301 & wait'], { detached: true, stdio: 'ignore' });
    started.push(child);
    await until(() => processTree(child.pid!).length >= 3);
    return { agent: child.pid!, family: processTree(child.pid!) };
  }

  it('kills a recorded agent still running, its group and a descendant that left the group, and forgets the record', async () => {
    const { agent, family } = await leftBehind();
    expect(family.length).to.be.at.least(3);
    writeFileSync(path.join(pidDir, 'ses_orphan.json'), JSON.stringify({ pid: agent, start: processStart(agent) }));
    expect(runner().stopOrphans()).to.equal(1);
    expect(await until(() => family.every((p) => !alive(p))), 'every process of the orphan is gone').to.equal(true);
    expect(readdirSync(pidDir)).to.deep.equal([]);
  });

  it('leaves alone a process that reused a recorded pid (its start time differs), and skips garbage', async () => {
    const { agent, family } = await leftBehind();
    writeFileSync(path.join(pidDir, 'ses_reused.json'), JSON.stringify({ pid: agent, start: '1' }));
    writeFileSync(path.join(pidDir, 'ses_garbage.json'), '{not json');
    writeFileSync(path.join(pidDir, 'ses_init.json'), JSON.stringify({ pid: 1, start: processStart(1) }));
    expect(runner().stopOrphans()).to.equal(0);
    expect(family.every(alive)).to.equal(true);
    expect(readdirSync(pidDir)).to.deep.equal([]);
  });

  it('records each running agent and removes the record when it exits', async () => {
    const workspaces = new WorkspaceManager({ root: base, retentionDays: 1, clock: systemClock, logger });
    const sessionId = newId('ses');
    const workspace = await workspaces.create(sessionId);
    const r = new ProcessRunner({
      command: [process.execPath, '-e', 'setTimeout(() => {}, 600)'],
      envPassthrough: [],
      timeoutMs: 10_000,
      killGraceMs: 200,
      logger,
      baseEnv: { PATH: process.env.PATH },
      workspacesRoot: base,
      pidDir,
    });
    const run = r.start(
      sessionId,
      buildPureRequest({ vision: 'wait a little while', workingDirectory: workspace, options: {}, maxAgents: 1 }),
      { onEvent: () => undefined },
    );
    const record = JSON.parse(readFileSync(path.join(pidDir, `${sessionId}.json`), 'utf8'));
    expect(record).to.deep.equal({ pid: run.pid, start: processStart(run.pid!) });
    await run.done;
    expect(readdirSync(pidDir)).to.deep.equal([]);
  });
});
