import { expect } from 'chai';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { checkAgentCommand } from '../../daemon/agents/command-check.js';
import { stderrTail } from '../../daemon/agents/process-runner.js';
import { loadConfig } from '../../daemon/config/load.js';
import { PROJECT_ROOT } from '../../daemon/paths.js';
import { withStderr } from '../../daemon/sessions/supervisor.js';

const tmp = () => mkdtempSync(path.join(tmpdir(), 'keen-cmd-'));

describe('agent.command resolution and start-up check', () => {
  it('resolves the built-in default against the package, not the config file folder', () => {
    const dir = tmp();
    const file = path.join(dir, 'gateway.yaml');
    writeFileSync(file, 'webhooks:\n  allow_private_targets: true\n');
    const c = loadConfig({ file, env: {}, cwd: tmp() });
    expect(c.agent.command).to.deep.equal(['node', path.join(PROJECT_ROOT, 'examples/agent/agent.js')]);
    expect(checkAgentCommand(c.agent.command, process.env.PATH)).to.deep.equal([]);
    // Without any file too, whatever the working directory.
    expect(loadConfig({ env: {}, cwd: tmp() }).agent.command[1]).to.equal(
      path.join(PROJECT_ROOT, 'examples/agent/agent.js'),
    );
  });

  it('still resolves a command given in the file against the file folder', () => {
    const dir = tmp();
    const file = path.join(dir, 'gateway.yaml');
    writeFileSync(file, 'agent:\n  command: ["node", "examples/agent/agent.js"]\n');
    expect(loadConfig({ file, env: {}, cwd: tmp() }).agent.command).to.deep.equal([
      'node',
      path.join(dir, 'examples/agent/agent.js'),
    ]);
  });

  it('finds a missing program, a program that is not executable and a missing script', () => {
    const dir = tmp();
    expect(checkAgentCommand(['no-such-agent-program'], '/usr/bin:/bin')[0]).to.match(
      /^agent\.command: the program "no-such-agent-program" is not found on the agent's PATH/,
    );
    expect(checkAgentCommand([path.join(dir, 'missing')], '/usr/bin')[0]).to.match(
      /^agent\.command: the program .*missing does not exist or is not executable/,
    );
    const plain = path.join(dir, 'plain');
    writeFileSync(plain, '#!/bin/sh\n');
    chmodSync(plain, 0o644);
    expect(checkAgentCommand([plain], '/usr/bin')).to.have.length(1);
    chmodSync(plain, 0o755);
    expect(checkAgentCommand([plain], '/usr/bin')).to.deep.equal([]);
    expect(checkAgentCommand(['node', path.join(dir, 'agent.js')], process.env.PATH)[0]).to.match(
      /^agent\.command: the script .*agent\.js does not exist/,
    );
    // A folder is not a program; options and non-path arguments are not checked.
    mkdirSync(path.join(dir, 'sub'));
    expect(checkAgentCommand([path.join(dir, 'sub')], '/usr/bin')).to.have.length(1);
    expect(checkAgentCommand(['node', '-e', 'process.exit(0)'], process.env.PATH)).to.deep.equal([]);
  });
});

describe('the stderr shown on a failed session', () => {
  it('keeps the last 20 non-blank lines, at most 2 KiB, without control characters or secrets', () => {
    const lines = Array.from({ length: 30 }, (_, i) => `line ${i}`);
    expect(stderrTail(`${lines.join('\n')}\n\n`)).to.equal(lines.slice(10).join('\n'));
    expect(stderrTail('\x1b[31mred\x1b[0m\r\nbell\x07 and\x00 nul\n')).to.equal('red\nbell and nul');
    expect(stderrTail('JWT_SECRET=abc123 KEEN_X="a b" OTHER=visible\npostgres://u:pw@db/x')).to.equal(
      'JWT_SECRET=*** KEEN_X=*** OTHER=visible\npostgres://u:***@db/x',
    );
    const long = stderrTail(`${'x'.repeat(5000)}end`)!;
    expect(Buffer.byteLength(long)).to.equal(2048);
    expect(long.endsWith('end')).to.equal(true);
    expect(stderrTail('\n \n')).to.equal(null);
  });

  it('goes into the summary only for a crash or a failed start', () => {
    expect(withStderr('agent_exit_1', null, 'boom')).to.equal('agent stderr (last lines):\nboom');
    expect(withStderr('agent_killed_SIGSEGV', 'partial', 'boom')).to.equal(
      'partial\n\nagent stderr (last lines):\nboom',
    );
    expect(
      withStderr('agent_not_started', null, 'keen-gateway: the agent could not be started: spawn x ENOENT'),
    ).to.equal('keen-gateway: the agent could not be started: spawn x ENOENT');
    for (const reason of ['completed', 'agent_reported_failure', 'timeout', 'cancelled', 'limit_memory'])
      expect(withStderr(reason, 'done', 'noise')).to.equal('done');
    expect(withStderr('agent_exit_1', 'done', null)).to.equal('done');
  });
});
