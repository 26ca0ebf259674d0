/**
 * Agent purity (docs/agent-protocol.md, "Start" and "Environment"): what a real
 * agent process can see is exactly its request, its workspace and a minimal
 * environment. The `[dump]` switch makes the example agent write everything it
 * was given into dump.json.
 */
import { expect } from 'chai';
import { mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildPureRequest, type PureRequestInput } from '../../../daemon/agents/pure-request.js';
import { ProcessRunner } from '../../../daemon/agents/process-runner.js';
import type { PureAgentRequest } from '../../../daemon/agents/types.js';
import { WorkspaceManager } from '../../../daemon/agents/workspaces.js';
import { systemClock } from '../../../daemon/clock.js';
import { newId } from '../../../daemon/ids.js';
import { createLogger } from '../../../daemon/logger.js';
import { PROJECT_ROOT } from '../../../daemon/paths.js';

const AGENT = path.join(PROJECT_ROOT, 'examples', 'agent', 'agent.js');

/**
 * The agent's environment as the runner built it. Node itself adds NODE_V8_COVERAGE to
 * every child while coverage is collected (c8 runs the tests); it is the only exception.
 */
function agentEnv(env: Record<string, string>): Record<string, string> {
  const { NODE_V8_COVERAGE: coverage, ...rest } = env;
  return coverage !== undefined && process.env.NODE_V8_COVERAGE ? rest : env;
}

/** What a daemon's environment may hold; none of these values may reach an agent. */
const SECRETS = {
  JWT_SECRET: 'jwt-secret-9f8e7d6c5b4a',
  KEEN_DATABASE_URL: 'postgres://keen:db-pass-4711@db.internal/keen',
  KEEN_REDIS_URL: 'redis://:redis-pass-0815@cache.internal:6379',
  KEEN_JWT_SECRET: 'keen-jwt-secret-1234567',
  DATABASE_URL: 'postgres://app:other-db-pass@db2/app',
  REDIS_URL: 'redis://cache2:6379/9',
  APP_DATABASE_URL: 'postgres://app:app-db-pass@db3/app',
  PGPASSWORD: 'libpq-password-value',
  KEEN_USER_ID: 'usr_01hzzzzzzzzzzzzzzzzzzzzzzz',
};
const USER = {
  userId: 'usr_01j0000000000000000000user',
  email: 'alice.secret@example.test',
  tenantId: 'ten_01j00000000000000000tenant',
  tier: 'enterprise',
  creditBalance: 47.5,
  rateLimitRemaining: 245,
};

describe('agents/ProcessRunner purity (security)', function () {
  this.timeout(60_000);
  let base: string;

  beforeEach(() => {
    base = realpathSync(mkdtempSync(path.join(tmpdir(), 'keen-purity-')));
  });
  afterEach(() => rmSync(base, { recursive: true, force: true }));

  /** Wired the way the daemon wires it: baseEnv is the daemon's whole environment. */
  function daemonLikeRunner(logLines: string[] = []): { runner: ProcessRunner; workspaces: WorkspaceManager } {
    const logger = createLogger('info', { write: (s: string) => void logLines.push(s) });
    const root = path.join(base, 'data', 'workspaces');
    const baseEnv = {
      ...process.env,
      ...SECRETS,
      LANG: 'en_US.UTF-8',
      SAFE_SETTING: 'visible-to-agent',
      MODEL_API_KEY: 'listed-provider-key',
      NOT_LISTED: 'hidden-value',
      OTHER_API_KEY: 'unlisted-key',
    };
    const runner = new ProcessRunner({
      command: ['node', AGENT], // a bare name: found through the agent's own PATH
      envPassthrough: [
        'SAFE_SETTING',
        'MODEL_API_KEY',
        'HOME',
        'PATH',
        'UNSET_VAR',
        ...Object.keys(SECRETS),
        'jwt_secret',
      ],
      timeoutMs: 30_000,
      killGraceMs: 1000,
      logger,
      baseEnv,
      workspacesRoot: root,
    });
    return { runner, workspaces: new WorkspaceManager({ root, retentionDays: 7, clock: systemClock, logger }) };
  }

  it('the agent sees exactly the request line, its workspace and PATH/HOME/LANG plus allowed passthrough names', async () => {
    const logLines: string[] = [];
    const { runner, workspaces } = daemonLikeRunner(logLines);
    const sessionId = newId('ses');
    const workspace = await workspaces.create(sessionId);

    // The execute path knows a lot about the user; it hands a rich object to the builder...
    const rich = {
      vision: 'Create a todo app [dump]',
      workingDirectory: workspace,
      options: { maxIterations: 5, costBudget: 25, ...USER },
      maxAgents: 4,
      ...USER,
    };
    const request = buildPureRequest(rich as unknown as PureRequestInput);
    // ...and even a structurally wider object handed straight to the runner leaks nothing.
    const wider = { ...request, ...USER, options: { ...request.options, ...USER } } as PureAgentRequest;
    const run = runner.start(sessionId, wider, { onEvent() {} });
    const exit = await run.done;
    expect(exit.result?.status).to.equal('completed');

    const dumpText = readFileSync(path.join(workspace, 'dump.json'), 'utf8');
    const dump = JSON.parse(dumpText) as { stdin: string; env: Record<string, string>; cwd: string; argv: string[] };

    // stdin: exactly one line, exactly these keys.
    expect(dump.stdin.endsWith('\n')).to.equal(true);
    expect(dump.stdin.split('\n')).to.have.length(2);
    const sent = JSON.parse(dump.stdin) as Record<string, unknown>;
    expect(sent).to.deep.equal({
      vision: 'Create a todo app [dump]',
      workingDirectory: workspace,
      options: { maxIterations: 5, maxAgents: 4, enableWebSearch: true, enableStreaming: true, showProgress: true },
    });
    expect(Object.keys(sent)).to.deep.equal(['vision', 'workingDirectory', 'options']);

    // environment: built from nothing.
    // A name the operator listed passes (an LLM agent needs its provider's key); nothing else does.
    expect(agentEnv(dump.env)).to.deep.equal({
      PATH: process.env.PATH,
      HOME: workspace,
      LANG: 'en_US.UTF-8',
      SAFE_SETTING: 'visible-to-agent',
      MODEL_API_KEY: 'listed-provider-key',
    });
    expect(dump.cwd).to.equal(workspace);
    expect(dump.argv.slice(1)).to.deep.equal([AGENT]);

    // No secret and no user fact appears anywhere in what the agent saw.
    for (const value of [
      ...Object.values(SECRETS),
      ...Object.values(USER).map(String),
      'hidden-value',
      'costBudget',
      'creditBalance',
    ]) {
      expect(dumpText, value).not.to.include(value);
    }
    // The workspace path holds the random session id only.
    expect(workspace).to.equal(path.join(base, 'data', 'workspaces', sessionId));
    for (const fact of [USER.userId, USER.email, USER.tenantId, USER.tier, 'alice'])
      expect(workspace).not.to.include(fact);

    // The refused passthrough names were reported once, by name, never with their values.
    const warned = logLines.filter((l) => l.includes('never passed to agents'));
    expect(warned.map((l) => (JSON.parse(l) as { name: string }).name).sort()).to.deep.equal(
      [...Object.keys(SECRETS), 'jwt_secret'].sort(),
    );
    for (const value of Object.values(SECRETS)) expect(logLines.join('\n')).not.to.include(value);
    const before = warned.length;
    const second = await workspaces.create(newId('ses'));
    await runner.start(
      path.basename(second),
      buildPureRequest({ vision: 'again', workingDirectory: second, options: {}, maxAgents: 1 }),
      { onEvent() {} },
    ).done;
    expect(logLines.filter((l) => l.includes('never passed to agents'))).to.have.length(before);
  });

  it('LANG defaults to C.UTF-8 and HOME is the workspace even when the daemon has its own', async () => {
    const logger = createLogger('silent');
    const root = path.join(base, 'ws');
    const workspaces = new WorkspaceManager({ root, retentionDays: 7, clock: systemClock, logger });
    const runner = new ProcessRunner({
      command: [process.execPath, AGENT],
      envPassthrough: [],
      timeoutMs: 30_000,
      killGraceMs: 1000,
      logger,
      baseEnv: { PATH: process.env.PATH, HOME: '/root', USER: 'keen', LANG: undefined },
      workspacesRoot: root,
    });
    const sessionId = newId('ses');
    const workspace = await workspaces.create(sessionId);
    await runner.start(
      sessionId,
      buildPureRequest({ vision: 'x [dump]', workingDirectory: workspace, options: {}, maxAgents: 1 }),
      { onEvent() {} },
    ).done;
    const dump = JSON.parse(readFileSync(path.join(workspace, 'dump.json'), 'utf8')) as { env: Record<string, string> };
    expect(agentEnv(dump.env)).to.deep.equal({ PATH: process.env.PATH, HOME: workspace, LANG: 'C.UTF-8' });
  });
});
