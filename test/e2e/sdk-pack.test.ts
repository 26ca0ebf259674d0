import { expect } from 'chai';
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { PROJECT_ROOT } from '../../daemon/paths.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { buildApiKey, buildUser } from '../helpers/factories.js';
import { grant } from '../helpers/sessions.js';

const run = promisify(execFile);
const SDK_DIR = path.join(PROJECT_ROOT, 'sdk');

/** The packages under node_modules, scoped ones as `@scope/name`. */
function installed(nodeModules: string): string[] {
  const names: string[] = [];
  for (const entry of readdirSync(nodeModules)) {
    if (entry.startsWith('.')) continue;
    if (entry.startsWith('@')) for (const sub of readdirSync(path.join(nodeModules, entry))) names.push(`${entry}/${sub}`);
    else names.push(entry);
  }
  return names.sort();
}

/** Runs the example in `cwd` with a clean environment (no tsx loader, no inherited keys). */
function example(cwd: string, env: Record<string, string>, vision: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['run.mjs', vision], { cwd, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += String(c)));
    child.stderr.on('data', (c: Buffer) => (stderr += String(c)));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('the SDK as a published package (npm pack, install, run the example)', function () {
  this.timeout(240_000);
  let tmp: string;
  let app: string;
  let d: TestDaemon;

  before(async () => {
    tmp = mkdtempSync(path.join(tmpdir(), 'keen-sdk-pack-'));
    app = path.join(tmp, 'app');
    mkdirSync(app);
    // What users get is what the build makes: start from an empty dist.
    rmSync(path.join(SDK_DIR, 'dist'), { recursive: true, force: true });
    await run('npx', ['tsc', '-p', 'sdk/tsconfig.json'], { cwd: PROJECT_ROOT });
    d = await startDaemon();
  });
  after(async () => {
    await d?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('packs the built SDK alone, installs with only its own dependencies, and runs the example against a daemon', async () => {
    const packed = JSON.parse((await run('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: SDK_DIR })).stdout) as Array<{
      filename: string;
      size: number;
      unpackedSize: number;
      files: Array<{ path: string }>;
    }>;
    const pack = packed[0]!;
    const files = pack.files.map((f) => f.path);
    expect(files).to.include.members(['package.json', 'README.md', 'dist/index.js', 'dist/index.d.ts', 'dist/types.gen.d.ts']);
    expect(files.filter((f) => !f.startsWith('dist/') && !['package.json', 'README.md'].includes(f))).to.deep.equal([]);
    console.log(`      packed ${pack.filename}: ${pack.size} bytes (${pack.unpackedSize} unpacked), ${files.length} files`);

    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', path.join(tmp, pack.filename)], { cwd: app });
    const deps = installed(path.join(app, 'node_modules'));
    console.log(`      installed: ${deps.join(', ')}`);
    expect(deps).to.deep.equal(['@keen/sdk', 'ws']);
    for (const heavy of ['argon2', 'better-sqlite3', 'pg', 'ioredis', 'koa']) expect(deps).not.to.include(heavy);

    copyFileSync(path.join(PROJECT_ROOT, 'examples/sdk/run.mjs'), path.join(app, 'run.mjs'));

    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 20);
    const key = (await buildApiKey(d, u)).key;
    const ok = await example(app, { KEEN_URL: d.url, KEEN_API_KEY: key, KEEN_BUDGET: '3' }, 'Build a small todo application [iterations:3]');
    expect(ok.code, ok.stderr + ok.stdout).to.equal(0);
    expect(ok.stdout).to.match(/^session  ses_\w+: 3 credits reserved/m);
    expect(ok.stdout).to.match(/^phase    EXPLORE$/m);
    expect(ok.stdout).to.match(/^progress /m);
    expect(ok.stdout).to.match(/^cost     [\d.]+ of 3 credits$/m);
    expect(ok.stdout).to.match(/^done     completed: charged [\d.]+ credits/m);

    // 402: the example says by how much the user is short, and exits 3.
    const poor = await buildUser(d);
    await grant(d, poor, 1);
    const short = await example(app, { KEEN_URL: d.url, KEEN_API_KEY: (await buildApiKey(d, poor)).key, KEEN_BUDGET: '3' }, 'Build a small todo application');
    expect(short.code, short.stderr + short.stdout).to.equal(3);
    expect(short.stderr).to.include('not enough credits: this run needs 3, 1 available (short by 2)');
  });
});
