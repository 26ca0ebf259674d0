import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../../daemon/paths.js';
import { runAdmin } from '../helpers/cli.js';
import { ADMIN, NODE_ARGS, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { IN_CI } from '../helpers/env.js';
import { buildApiKey, buildUser } from '../helpers/factories.js';
import { grant } from '../helpers/sessions.js';

const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;
const quote = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;

/**
 * Runs keen-admin with standard error on a pseudo-terminal (util-linux `script`) and
 * standard output redirected to `outFile`: what a person sees, and what a pipe gets.
 */
function onTerminal(
  args: string[],
  env: Record<string, string>,
  outFile: string,
): Promise<{ code: number | null; terminal: string }> {
  const command = `${[process.execPath, ...NODE_ARGS, ADMIN, ...args].map(quote).join(' ')} > ${quote(outFile)}`;
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let terminal = '';
    child.stdout.on('data', (c) => (terminal += String(c)));
    child.stderr.on('data', (c) => (terminal += String(c)));
    child.on('error', reject);
    child.on('exit', (code) => {
      child.stdin.end();
      resolve({ code, terminal });
    });
  });
}

describe('keen-admin progress on the long jobs (credits verify, audit verify, audit export)', () => {
  beforeEach(function () {
    this.currentTest?.timeout(90_000);
  });
  let d: TestDaemon;
  let env: Record<string, string>;
  let dir: string;

  before(async function () {
    if (!hasScript) {
      if (IN_CI) throw new Error('`script` (util-linux) is missing: the progress display cannot be tested');
      this.skip();
    }
    d = await startDaemon({ logLevel: 'warn' });
    const admin = await buildUser(d, { role: 'admin', tier: 'enterprise' });
    const member = await buildUser(d);
    await grant(d, member, 5);
    env = {
      KEEN_URL: d.url,
      KEEN_API_KEY: (await buildApiKey(d, admin)).key,
      KEEN_PROFILE: '',
      XDG_CONFIG_HOME: mkdtempSync(path.join(tmpdir(), 'keen-cli-')),
    };
    dir = mkdtempSync(path.join(tmpdir(), 'keen-progress-'));
  });
  after(async () => {
    await d?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('says nothing on standard error when it is not a terminal', async () => {
    for (const args of [
      ['credits', 'verify'],
      ['audit', 'verify'],
      ['audit', 'export', '--since', '1d'],
      ['audit', 'verify', '--json'],
    ]) {
      const r = await runAdmin(args, { env });
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(0);
      expect(r.stderr, args.join(' ')).to.equal('');
    }
  });

  it('audit export on a terminal: counts and rate on stderr, only JSON Lines on stdout', async () => {
    const out = path.join(dir, 'export.jsonl');
    const r = await onTerminal(['audit', 'export', '--since', '1d'], env, out);
    expect(r.code, r.terminal).to.equal(0);
    const lines = readFileSync(out, 'utf8').trimEnd().split('\n');
    expect(lines.length).to.be.greaterThan(1);
    for (const line of lines) expect(JSON.parse(line)).to.have.property('seq');
    expect(r.terminal).to.match(new RegExp(`keen-admin: exported ${lines.length} entries, [\\d,]+/s, \\d+ s`));
  });

  it('audit verify --json on a terminal: entries being checked on stderr, one JSON document on stdout', async () => {
    const out = path.join(dir, 'verify.json');
    const r = await onTerminal(['audit', 'verify', '--json'], env, out);
    expect(r.code, r.terminal).to.equal(0);
    const report = JSON.parse(readFileSync(out, 'utf8'));
    expect(report.ok).to.equal(true);
    expect(r.terminal).to.match(/keen-admin: the daemon is checking the chain of [\d,]+ entries\.\.\. \d+ s/);
    // The line is cleared once the answer is in, and nothing else reached the terminal.
    expect(r.terminal).to.include('\r\x1b[K');
    expect(r.terminal).not.to.include('"ok"');
  });

  it('credits verify on a terminal: the time so far on stderr, the result on stdout', async () => {
    const out = path.join(dir, 'credits.txt');
    const r = await onTerminal(['credits', 'verify'], env, out);
    expect(r.code, r.terminal).to.equal(0);
    expect(readFileSync(out, 'utf8')).to.equal('ledger consistent\n');
    expect(r.terminal).to.match(/keen-admin: the daemon is checking every account and pool\.\.\. \d+ s/);
  });
});
