/**
 * ProcessRunner with real child processes: the example agent and small inline
 * scripts. Timing assertions are only generous upper bounds (slow CI machines).
 */
import { expect } from 'chai';
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildPureRequest } from '../../../daemon/agents/pure-request.js';
import { ProcessRunner, type ProcessRunnerOptions } from '../../../daemon/agents/process-runner.js';
import type { AgentEvent, AgentExit, AgentRun } from '../../../daemon/agents/types.js';
import { WorkspaceManager } from '../../../daemon/agents/workspaces.js';
import { systemClock } from '../../../daemon/clock.js';
import { newId } from '../../../daemon/ids.js';
import { createLogger } from '../../../daemon/logger.js';
import { PROJECT_ROOT } from '../../../daemon/paths.js';

const AGENT = path.join(PROJECT_ROOT, 'examples', 'agent', 'agent.js');
const logger = createLogger('silent');

interface Started {
  run: AgentRun;
  events: AgentEvent[];
  invalid: string[];
  workspace: string;
  done: Promise<AgentExit>;
}

describe('agents/ProcessRunner (real processes)', function () {
  this.timeout(60_000);
  let base: string;
  let workspaces: WorkspaceManager;

  beforeEach(() => {
    base = realpathSync(mkdtempSync(path.join(tmpdir(), 'keen-runner-')));
    workspaces = new WorkspaceManager({ root: path.join(base, 'ws'), retentionDays: 7, clock: systemClock, logger });
  });
  afterEach(() => rmSync(base, { recursive: true, force: true }));

  function runner(overrides: Partial<ProcessRunnerOptions> = {}): ProcessRunner {
    return new ProcessRunner({
      command: [process.execPath, AGENT],
      envPassthrough: [],
      timeoutMs: 30_000,
      killGraceMs: 500,
      logger,
      baseEnv: { PATH: process.env.PATH },
      workspacesRoot: path.join(base, 'ws'),
      ...overrides,
    });
  }

  async function start(
    r: ProcessRunner,
    vision: string,
    onEvent?: (e: AgentEvent, run: AgentRun) => void | Promise<void>,
    options: Parameters<typeof buildPureRequest>[0]['options'] = {},
  ): Promise<Started> {
    const sessionId = newId('ses');
    const workspace = await workspaces.create(sessionId);
    const events: AgentEvent[] = [];
    const invalid: string[] = [];
    let run: AgentRun | undefined;
    run = r.start(sessionId, buildPureRequest({ vision, workingDirectory: workspace, options, maxAgents: 2 }), {
      async onEvent(e) {
        events.push(e);
        await onEvent?.(e, run!);
      },
      onInvalidLine: (line) => invalid.push(line),
    });
    return { run, events, invalid, workspace, done: run.done };
  }

  /** Inline agent scripts: `node -e <script>`. */
  const script = (src: string): ProcessRunner => runner({ command: [process.execPath, '-e', src] });

  it('runs the example agent to completion and delivers every event type in order', async () => {
    const { run, events, invalid, workspace, done } = await start(runner(), 'Create a todo app');
    expect(run.pid).to.be.a('number');
    const exit = await done;
    expect(exit).to.deep.equal({
      reason: 'exited',
      exitCode: 0,
      signal: null,
      result: exit.result,
      invalidLines: 0,
      stopReason: null,
      limit: null,
    });
    expect(exit.result?.status).to.equal('completed');
    expect(invalid).to.deep.equal([]);
    const phases = events.filter((e) => e.type === 'phase').map((e) => (e as { phase: string }).phase);
    expect(phases).to.deep.equal(['EXPLORE', 'PLAN', 'BUILD', 'VERIFY']);
    expect(new Set(events.map((e) => e.type))).to.deep.equal(new Set(['phase', 'progress', 'log', 'usage', 'result']));
    expect(events.at(-1)).to.deep.include({ type: 'result', status: 'completed' });
    const percents = events.flatMap((e) => (e.type === 'progress' && e.percent !== undefined ? [e.percent] : []));
    expect(percents).to.deep.equal([...percents].sort((a, b) => a - b));
    expect(percents.at(-1)).to.equal(100);
    expect(readFileSync(path.join(workspace, 'PLAN.md'), 'utf8')).to.include('Create a todo app');
    expect(existsSync(path.join(workspace, 'src', 'create-a-todo-app.js'))).to.equal(true);
    // web searches are reported because enableWebSearch defaults to true
    expect(events.some((e) => e.type === 'usage' && e.web_searches > 0)).to.equal(true);
  });

  it('awaits onEvent: events arrive one at a time, in stdout order, even with a slow consumer', async () => {
    const src = `for (let i = 0; i < 300; i++) console.log(JSON.stringify({type:'log',level:'info',message:String(i)}));`;
    let inFlight = 0;
    let maxInFlight = 0;
    const { events, done } = await start(script(src), 'ordered', async () => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setImmediate(r));
      inFlight--;
    });
    const exit = await done;
    expect(exit.reason).to.equal('exited');
    expect(maxInFlight).to.equal(1);
    expect(events.map((e) => (e as { message: string }).message)).to.deep.equal(
      Array.from({ length: 300 }, (_, i) => String(i)),
    );
  });

  it('counts garbage lines as invalid and never delivers them', async () => {
    const { events, invalid, done } = await start(runner(), 'Todo [garbage]');
    const exit = await done;
    expect(exit.result?.status).to.equal('completed');
    // 5 bad lines after EXPLORE and after each of the 2 steps
    expect(exit.invalidLines).to.equal(15);
    expect(invalid).to.have.length(15);
    expect(invalid).to.include('this is not json');
    for (const e of events) {
      expect(JSON.stringify(e)).not.to.include('extra');
      if (e.type === 'usage') expect(e.input_tokens).to.be.at.least(0);
    }
  });

  it('drops an overlong stdout line and keeps reading', async () => {
    const src = `process.stdout.write(JSON.stringify({type:'log',level:'info',message:'x'.repeat(200000)})+'\\n'); console.log(JSON.stringify({type:'phase',phase:'AFTER'}));`;
    const { events, invalid, done } = await start(script(src), 'long line');
    const exit = await done;
    expect(exit.invalidLines).to.equal(1);
    expect(invalid[0]!.length).to.be.below(1000);
    expect(events).to.deep.equal([{ type: 'phase', phase: 'AFTER' }]);
  });

  it('a failing agent ends with its failed result and exit code 1', async () => {
    const exit = await (await start(runner(), 'Todo [fail]')).done;
    expect(exit).to.deep.include({ reason: 'exited', exitCode: 1, signal: null });
    expect(exit.result?.status).to.equal('failed');
  });

  it('a crashing agent ends with exit code 3 and no result', async () => {
    const { events, done } = await start(runner(), 'Todo [crash] [iterations:4]');
    const exit = await done;
    expect(exit).to.deep.include({ reason: 'exited', exitCode: 3, result: null });
    expect(events.some((e) => e.type === 'result')).to.equal(false);
  });

  it('the wall-clock timeout stops the agent (reason timeout)', async () => {
    const t0 = Date.now();
    const { done } = await start(runner({ timeoutMs: 1000 }), 'Todo [slow:3000] [iterations:20]');
    const exit = await done;
    expect(exit.reason).to.equal('timeout');
    expect(exit.stopReason).to.equal('timeout');
    expect(exit.signal).to.equal('SIGTERM');
    expect(exit.result).to.equal(null);
    expect(Date.now() - t0).to.be.below(20_000);
  });

  it('stop() sends SIGTERM, is idempotent, and can be awaited from inside onEvent (budget stop)', async () => {
    let usage = 0;
    let stops = 0;
    const { run, done } = await start(runner(), 'Todo [overspend]', async (e, r) => {
      if (e.type !== 'usage') return;
      usage += e.input_tokens;
      if (usage >= 3_000_000 && stops++ === 0) await r.stop('budget');
    });
    const exit = await done;
    expect(exit.reason).to.equal('stopped');
    expect(exit.stopReason).to.equal('budget');
    expect(exit.signal).to.equal('SIGTERM');
    expect(usage).to.be.below(1000 * 1_000_000);
    await run.stop('again');
    expect((await run.done).stopReason).to.equal('budget');
  });

  it('stop() escalates to SIGKILL when the agent ignores SIGTERM', async () => {
    let stopped: Promise<unknown[]> | undefined;
    const { events, done } = await start(
      runner({ killGraceMs: 700 }),
      'Todo [ignore-sigterm] [slow:500] [iterations:100]',
      (e, r) => {
        // The agent installed its SIGTERM handler before its first line.
        if (e.type === 'phase' && e.phase === 'EXPLORE') stopped = Promise.all([r.stop('cancelled'), r.stop('other')]);
      },
    );
    const exit = await done;
    await stopped;
    expect(exit.reason).to.equal('stopped');
    expect(exit.signal).to.equal('SIGKILL');
    expect(exit.stopReason).to.equal('cancelled');
    expect(events.some((e) => e.type === 'log' && e.message === 'SIGTERM ignored')).to.equal(true);
  });

  it('kills grandchildren with the process group, on stop and on a normal exit', async () => {
    for (const mode of ['stop', 'exit'] as const) {
      const vision = mode === 'stop' ? 'Todo [grandchild] [slow:2000] [iterations:20]' : 'Todo [grandchild]';
      const { run, workspace, done } = await start(runner({ killGraceMs: 500 }), vision, async (e, r) => {
        if (mode === 'stop' && e.type === 'phase' && e.phase === 'EXPLORE') void r.stop('cancelled');
      });
      const exit = await done;
      expect(exit.reason, mode).to.equal(mode === 'stop' ? 'stopped' : 'exited');
      const gpid = Number(readFileSync(path.join(workspace, 'grandchild.pid'), 'utf8'));
      expect(gpid).to.be.above(0);
      expect(await gone(gpid), `grandchild ${gpid} after ${mode}`).to.equal(true);
      void run;
    }
  });

  it('appends stderr to <workspace>/.keen/agent.stderr.log, bounded at 1 MiB with a note', async () => {
    const { workspace, done } = await start(runner(), 'Todo [stderr:3000000]');
    const exit = await done;
    expect(exit.result?.status).to.equal('completed');
    const file = path.join(workspace, '.keen', 'agent.stderr.log');
    const text = readFileSync(file, 'utf8');
    expect(statSync(file).size).to.be.within(1024 * 1024, 1024 * 1024 + 200);
    expect(text).to.match(/stderr truncated after 1048576 bytes/);
    expect(statSync(file).mode & 0o777).to.equal(0o600);
  });

  it('a missing command resolves done with spawn_failed and never throws', async () => {
    for (const command of [[path.join(base, 'no-such-agent')], ['keen-no-such-command-xyz'], [AGENT]]) {
      const { run, done } = await start(runner({ command }), 'Todo');
      const exit = await done;
      expect(exit.reason, command[0]).to.equal('spawn_failed');
      expect(exit.exitCode).to.equal(null);
      expect(run.pid).to.equal(undefined);
      await run.stop('whatever');
    }
  });

  it('refuses a request whose workingDirectory is not the session workspace (spawn_failed)', async () => {
    const sessionId = newId('ses');
    await workspaces.create(sessionId);
    const other = await workspaces.create(newId('ses'));
    const r = runner();
    const run = r.start(
      sessionId,
      buildPureRequest({ vision: 'x', workingDirectory: other, options: {}, maxAgents: 1 }),
      { onEvent() {} },
    );
    expect((await run.done).reason).to.equal('spawn_failed');
    const bad = r.start(
      '../etc',
      buildPureRequest({ vision: 'x', workingDirectory: other, options: {}, maxAgents: 1 }),
      { onEvent() {} },
    );
    expect((await bad.done).reason).to.equal('spawn_failed');
  });

  it('a throwing onEvent hook is logged and the stream goes on', async () => {
    const { events, done } = await start(runner(), 'Todo', () => {
      throw new Error('consumer bug');
    });
    const exit = await done;
    expect(exit.result?.status).to.equal('completed');
    expect(events.at(-1)?.type).to.equal('result');
  });
});

/** True once the process is gone (or a zombie nobody reaped yet), within a generous bound. */
async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    try {
      process.kill(pid, 0);
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (/^\d+ \(.*\) Z/.test(stat)) return true;
    } catch {
      return true;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}
