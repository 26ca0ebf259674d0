import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../../daemon/paths.js';
import { runAdmin, type CliRun } from '../helpers/cli.js';
import { ADMIN, NODE_ARGS, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { buildApiKey, buildUser, type TestUser } from '../helpers/factories.js';
import { grant, waitForEnd } from '../helpers/sessions.js';

/**
 * An agent whose output is hostile: a log line that would clear the screen,
 * set the terminal title and forge an event line, a bidi override. It waits
 * `[wait:MS]` before its first event (so a watch started at once follows it
 * live), hangs on `[hang]` (to be cancelled) and fails on `[fail]`.
 */
const HOSTILE_AGENT = `
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let input = '';
process.stdin.on('data', (c) => (input += c));
process.stdin.on('end', async () => {
  const v = JSON.parse(input.split('\\n')[0]).vision;
  const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
  const wait = /\\[wait:(\\d+)\\]/.exec(v);
  await sleep(wait ? Number(wait[1]) : 0);
  out({ type: 'phase', phase: 'EXPLORE' });
  out({ type: 'log', level: 'warn', message: 'hostile \\u001b[2J\\u001b]0;pwned\\u0007 line\\r\\n12:00:00  #99   session.status  completed \\u202eexe' });
  out({ type: 'progress', message: 'half way', percent: 50 });
  out({ type: 'usage', input_tokens: 1000, output_tokens: 100, web_searches: 0 });
  if (v.includes('[hang]')) await sleep(60000);
  if (v.includes('[fail]')) {
    out({ type: 'result', status: 'failed', summary: 'it broke\\nsecond line' });
    process.exit(1);
  }
  out({ type: 'phase', phase: 'VERIFY' });
  out({ type: 'result', status: 'completed', summary: 'done' });
});
`;

const ESC = '\u001b';

/** `#N` of each event line, in order. */
const seqs = (stdout: string) => [...stdout.matchAll(/^\d\d:\d\d:\d\d {2}#(\d+) /gm)].map((m) => Number(m[1]));

describe('keen-admin sessions watch and logs against a real daemon', () => {
  // Every step spawns CLI processes and runs an agent: slow on a loaded machine.
  beforeEach(function () {
    this.currentTest?.timeout(90_000);
  });
  let d: TestDaemon;
  let dir: string;
  let u: TestUser;
  let env: Record<string, string>;
  let adminEnv: Record<string, string>;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'keen-watch-agent-'));
    writeFileSync(path.join(dir, 'agent.js'), HOSTILE_AGENT);
    d = await startDaemon({ config: { agent: { command: ['node', path.join(dir, 'agent.js')] } } });
    u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 100);
    env = { KEEN_URL: d.url, KEEN_API_KEY: (await buildApiKey(d, u)).key };
    const admin = await buildUser(d, { role: 'admin', tier: 'enterprise' });
    adminEnv = { KEEN_URL: d.url, KEEN_API_KEY: (await buildApiKey(d, admin)).key };
  });
  after(async () => {
    await d?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function start(vision: string): Promise<string> {
    const r = await d.api.post(
      '/v1/agents/execute',
      { vision, options: { maxIterations: 1, costBudget: 2 } },
      { token: u.token },
    );
    expect(r.status, r.text).to.equal(200);
    return r.body.session.id as string;
  }

  /** Spawns keen-admin like runAdmin, and resolves when its stdout matches `until` (or it exits). */
  function spawnAdmin(args: string[]) {
    const child = spawn(process.execPath, [...NODE_ARGS, ADMIN, ...args], {
      cwd: PROJECT_ROOT,
      env: {
        ...process.env,
        KEEN_PROFILE: '',
        KEEN_HOST: '',
        KEEN_PORT: '',
        KEEN_CONFIG: '',
        NO_COLOR: '',
        XDG_CONFIG_HOME: dir,
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const run: CliRun = { code: null, stdout: '', stderr: '', json: null };
    child.stdout.on('data', (c) => (run.stdout += String(c)));
    child.stderr.on('data', (c) => (run.stderr += String(c)));
    const exited = new Promise<CliRun>((resolve) => child.on('exit', (code) => resolve({ ...run, code })));
    const seen = async (pattern: RegExp) => {
      const until = Date.now() + 30_000;
      while (!pattern.test(run.stdout)) {
        if (Date.now() > until || child.exitCode !== null)
          throw new Error(`no ${pattern} in the output: ${run.stdout}\n${run.stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    return { child, exited, seen };
  }

  it("watch follows a running session live, escapes the agent's text, then prints the final status and cost and exits 0", async () => {
    const id = await start('Build a small todo application [wait:3000]');
    const watch = spawnAdmin(['sessions', 'watch', id]);
    // The first event comes before the agent's (it waits 3 s): the watch is live, not replaying a finished run.
    await watch.seen(/session\.status +running/);
    expect((await d.api.get(`/v1/sessions/${id}`, { token: u.token })).body.session.status).to.equal('running');
    const r = await watch.exited;
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stderr).to.equal('');
    const lines = r.stdout.trimEnd().split('\n');
    const events = (await d.api.get(`/v1/sessions/${id}/events`, { token: u.token })).body.events as Array<{
      seq: number;
      type: string;
    }>;
    expect(seqs(r.stdout)).to.deep.equal(events.map((e) => e.seq));
    expect(r.stdout)
      .to.match(/#\d+ +agent\.phase +phase EXPLORE/)
      .and.match(/agent\.progress +half way \(50%\)/)
      .and.match(/cost\.update +cost so far [\d.]+ of 2 reserved/);
    // Hostile text: escaped, on its own line, no escape byte reaches the terminal (and no colour in a pipe).
    expect(r.stdout)
      .not.to.include(ESC)
      .and.not.to.include('\r')
      .and.not.to.include('\u202e')
      .and.not.to.include('\u0007');
    expect(r.stdout).to.include('hostile \\u001b[2J\\u001b]0;pwned\\u0007 line\\u000d\\u000a12:00:00  #99');
    expect(lines.filter((l) => l.includes('#99'))).to.have.length(1);
    // The final status, the agent's summary under it, then the closing line.
    expect(lines.at(-3)).to.match(/session\.status +completed final cost [\d.]+/);
    expect(lines.at(-2)).to.equal('    done');
    expect(lines.at(-1)).to.match(
      new RegExp(
        `^${id} completed: final cost [\\d.]+ credits of 2 reserved; 1000 input and 100 output tokens, 0 web searches$`,
      ),
    );
  });

  it('watch of a session that already ended prints its events and ends: exit 1 for failed, 0 for completed; --json is JSON Lines', async () => {
    const failed = await start('Build a small todo application [fail]');
    await waitForEnd(d, u, failed);
    const r = await runAdmin(['sessions', 'watch', failed], { env });
    expect(r.code, r.stderr).to.equal(1);
    expect(r.stdout)
      .to.match(/session\.status +failed/)
      .and.include('    it broke\n    second line\n');
    expect(r.stdout.trimEnd().split('\n').at(-1)).to.match(new RegExp(`^${failed} failed \\(.+\\): final cost`));

    const done = await start('Build a small todo application');
    await waitForEnd(d, u, done);
    const json = await runAdmin(['sessions', 'watch', done, '--json'], { env });
    expect(json.code, json.stderr).to.equal(0);
    const events = (await d.api.get(`/v1/sessions/${done}/events`, { token: u.token })).body.events;
    expect(
      json.stdout
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l)),
    ).to.deep.equal(events);
  });

  it('watch exits 1 when the session is cancelled while it watches', async () => {
    const id = await start('Build a small todo application [hang]');
    const watch = spawnAdmin(['sessions', 'watch', id]);
    await watch.seen(/half way/);
    const cancel = await d.api.post(`/v1/sessions/${id}/cancel`, {}, { token: u.token });
    expect(cancel.status, cancel.text).to.equal(200);
    const r = await watch.exited;
    expect(r.code, r.stderr).to.equal(1);
    expect(r.stdout.trimEnd().split('\n').at(-1)).to.match(new RegExp(`^${id} cancelled`));
  });

  it('Ctrl-C stops watching with exit 130; the session goes on', async () => {
    const id = await start('Build a small todo application [hang]');
    const watch = spawnAdmin(['sessions', 'watch', id]);
    await watch.seen(/half way/);
    watch.child.kill('SIGINT');
    const r = await watch.exited;
    expect(r.code).to.equal(130);
    expect(r.stderr).to.include('stopped watching');
    expect((await d.api.get(`/v1/sessions/${id}`, { token: u.token })).body.session.status).to.equal('running');
    await d.api.post(`/v1/sessions/${id}/cancel`, {}, { token: u.token });
  });

  it('logs prints every stored event (all pages) and exits 0; --json is the events as stored; a session out of reach says whose key to use', async () => {
    const id = await start('Build a small todo application');
    await waitForEnd(d, u, id);
    const events = (await d.api.get(`/v1/sessions/${id}/events`, { token: u.token })).body.events as Array<{
      seq: number;
    }>;
    const r = await runAdmin(['sessions', 'logs', id], { env });
    expect(r.code, r.stderr).to.equal(0);
    expect(seqs(r.stdout)).to.deep.equal(events.map((e) => e.seq));
    expect(r.stdout).not.to.include(ESC);
    const json = await runAdmin(['sessions', 'logs', id, '--json'], { env });
    expect(json.code, json.stderr).to.equal(0);
    expect(
      json.stdout
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l)),
    ).to.deep.equal(events);
    // NO_COLOR and --no-color change nothing in a pipe: there is no colour to remove.
    expect((await runAdmin(['sessions', 'logs', id, '--no-color'], { env })).stdout).to.equal(r.stdout);

    const other = await runAdmin(['sessions', 'logs', id], { env: adminEnv });
    expect(other.code).to.equal(1);
    expect(other.stderr).to.include('NOT_FOUND').and.include("the owner's key");
    const help = await runAdmin(['sessions', 'watch', '--help']);
    expect(help.stdout)
      .to.include('Examples:')
      .and.include('Exit codes: 0 the session completed')
      .and.include('NO_COLOR');
  });

  it('colours status words and event types on a terminal, unless NO_COLOR is set or --no-color is given', async function () {
    // `script` (util-linux) gives the command a pseudo-terminal.
    if (spawnSync('script', ['--version'], { encoding: 'utf8' }).status !== 0) this.skip();
    const id = await start('Build a small todo application');
    await waitForEnd(d, u, id);
    // Asynchronous: the daemon answering the command runs in this process.
    const onTty = (extra: string[], noColor: string) =>
      new Promise<{ code: number | null; out: string }>((resolve, reject) => {
        const cmd = [process.execPath, ...NODE_ARGS, ADMIN, 'sessions', 'logs', id, ...extra]
          .map((a) => `'${a}'`)
          .join(' ');
        const child = spawn('script', ['-qec', cmd, '/dev/null'], {
          cwd: PROJECT_ROOT,
          env: {
            ...process.env,
            KEEN_PROFILE: '',
            KEEN_HOST: '',
            KEEN_PORT: '',
            KEEN_CONFIG: '',
            XDG_CONFIG_HOME: dir,
            NO_COLOR: noColor,
            ...env,
          },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        child.stdout.on('data', (c) => (out += String(c)));
        child.stderr.on('data', (c) => (out += String(c)));
        child.on('error', reject);
        child.on('exit', (code) => resolve({ code, out }));
      });
    const coloured = await onTty([], '');
    expect(coloured.code, coloured.out).to.equal(0);
    expect(coloured.out).to.include(`${ESC}[32mcompleted${ESC}[0m`).and.include(`${ESC}[1msession.status`);
    // The agent's own escape is still escaped on a terminal.
    expect(coloured.out).to.include('\\u001b[2J');
    const noColor = await onTty([], '1');
    expect(noColor.code, noColor.out).to.equal(0);
    expect(noColor.out).to.include('session.status').and.not.include(ESC);
    const flag = await onTty(['--no-color'], '');
    expect(flag.code, flag.out).to.equal(0);
    expect(flag.out).to.include('session.status').and.not.include(ESC);
  });
});
