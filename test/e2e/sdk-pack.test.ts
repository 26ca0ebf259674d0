import { expect } from 'chai';
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { PROJECT_ROOT } from '../../daemon/paths.js';
import { freshSdkCopy } from '../browser/support.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { buildApiKey, buildUser } from '../helpers/factories.js';
import { grant } from '../helpers/sessions.js';

const run = promisify(execFile);

/** The packages under node_modules, scoped ones as `@scope/name`. */
function installed(nodeModules: string): string[] {
  const names: string[] = [];
  for (const entry of readdirSync(nodeModules)) {
    if (entry.startsWith('.')) continue;
    if (entry.startsWith('@'))
      for (const sub of readdirSync(path.join(nodeModules, entry))) names.push(`${entry}/${sub}`);
    else names.push(entry);
  }
  return names.sort();
}

/** Runs `script` (the example by default) in `cwd` with a clean environment (no tsx loader, no inherited keys). */
function example(
  cwd: string,
  env: Record<string, string>,
  vision: string,
  script = 'run.mjs',
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, vision], {
      cwd,
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += String(c)));
    child.stderr.on('data', (c: Buffer) => (stderr += String(c)));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The same calls from CommonJS and from an ES module: which file Node loaded, the balance, `me()`, a typed error. */
const consumer = (load: string, resolved: string) => `${load}
const client = new KeenClient({ baseUrl: process.env.KEEN_URL, apiKey: process.env.KEEN_API_KEY });
const stranger = new KeenClient({ baseUrl: process.env.KEEN_URL, apiKey: 'ak_live_0000000000000000000000000000000000000000', maxRetries: 0 });
(async () => {
  const balance = await client.credits.balance();
  const me = await client.me();
  const refused = await stranger.me().then(() => null, (err) => ({ auth: err instanceof AuthenticationError, keen: err instanceof KeenError, status: err.status }));
  let events = [];
  if (process.argv[2]) {
    const run = await client.execute({ vision: process.argv[2], options: { costBudget: 2 } });
    for await (const e of client.stream(run.session.id)) events.push(e.type);
  }
  console.log(JSON.stringify({ resolved: ${resolved}, balance: balance.balance, via: me.auth, refused, events }));
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
`;

/** Both entry points typed: an .mts importing and a .cts requiring the package, checked by tsc (NodeNext). */
const TYPES_CHECK = {
  'tsconfig.json': JSON.stringify({
    compilerOptions: {
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      target: 'ES2022',
      lib: ['ES2023', 'DOM'],
      types: [],
      strict: true,
      noEmit: true,
      skipLibCheck: true,
    },
    files: ['check.mts', 'check.cts'],
  }),
  'check.mts': `import { KeenClient, InsufficientCreditsError, type CreditBalanceResponse } from '@keen/sdk';
const client: KeenClient = new KeenClient({ baseUrl: 'http://127.0.0.1:1', apiKey: 'ak_live_x' });
const balance: Promise<CreditBalanceResponse> = client.credits.balance();
// @ts-expect-error baseUrl is required
new KeenClient({ apiKey: 'ak_live_x' });
export const shortfall = (e: InsufficientCreditsError): number | null => e.shortfall;
export { balance };
`,
  'check.cts': `import sdk = require('@keen/sdk');
const client: sdk.KeenClient = new sdk.KeenClient({ baseUrl: 'http://127.0.0.1:1', apiKey: 'ak_live_x' });
const balance: Promise<sdk.CreditBalanceResponse> = client.credits.balance();
// @ts-expect-error baseUrl is required
new sdk.KeenClient({ apiKey: 'ak_live_x' });
export = { balance };
`,
};

describe('the SDK as a published package (npm pack, install, run the example)', function () {
  this.timeout(240_000);
  let tmp: string;
  let app: string;
  let sdkCopy: string;
  let d: TestDaemon;

  before(async () => {
    tmp = mkdtempSync(path.join(tmpdir(), 'keen-sdk-pack-'));
    app = path.join(tmp, 'app');
    mkdirSync(app);
    // What users get is what the build makes: pack a copy of sdk/ as a fresh clone has it, with no dist.
    sdkCopy = freshSdkCopy(tmp);
    d = await startDaemon();
  });
  after(async () => {
    await d?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('packs the SDK (building it: no dist before), installs with only its own dependencies, and runs the example against a daemon', async () => {
    expect(existsSync(path.join(sdkCopy, 'dist'))).to.equal(false);
    const packed = JSON.parse(
      (await run('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: sdkCopy })).stdout,
    ) as Array<{
      filename: string;
      size: number;
      unpackedSize: number;
      files: Array<{ path: string }>;
    }>;
    const pack = packed[0]!;
    const files = pack.files.map((f) => f.path);
    expect(files).to.include.members([
      'package.json',
      'README.md',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/types.gen.d.ts',
      'dist/cjs/package.json',
      'dist/cjs/index.js',
      'dist/cjs/index.d.ts',
      'dist/cjs/types.gen.d.ts',
    ]);
    expect(files.filter((f) => !f.startsWith('dist/') && !['package.json', 'README.md'].includes(f))).to.deep.equal([]);
    console.log(
      `      packed ${pack.filename}: ${pack.size} bytes (${pack.unpackedSize} unpacked), ${files.length} files`,
    );

    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', path.join(tmp, pack.filename)], {
      cwd: app,
    });
    const deps = installed(path.join(app, 'node_modules'));
    console.log(`      installed: ${deps.join(', ')}`);
    expect(deps).to.deep.equal(['@keen/sdk', 'ws']);
    for (const heavy of ['argon2', 'better-sqlite3', 'pg', 'ioredis', 'koa']) expect(deps).not.to.include(heavy);

    copyFileSync(path.join(PROJECT_ROOT, 'examples/sdk/run.mjs'), path.join(app, 'run.mjs'));

    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 20);
    const key = (await buildApiKey(d, u)).key;
    const ok = await example(
      app,
      { KEEN_URL: d.url, KEEN_API_KEY: key, KEEN_BUDGET: '3' },
      'Build a small todo application [iterations:3]',
    );
    expect(ok.code, ok.stderr + ok.stdout).to.equal(0);
    expect(ok.stdout).to.match(/^session  ses_\w+: 3 credits reserved/m);
    expect(ok.stdout).to.match(/^phase    EXPLORE$/m);
    expect(ok.stdout).to.match(/^progress /m);
    expect(ok.stdout).to.match(/^cost     [\d.]+ of 3 credits$/m);
    expect(ok.stdout).to.match(/^done     completed: charged [\d.]+ credits/m);

    // 402: the example says by how much the user is short, and exits 3.
    const poor = await buildUser(d);
    await grant(d, poor, 1);
    const short = await example(
      app,
      { KEEN_URL: d.url, KEEN_API_KEY: (await buildApiKey(d, poor)).key, KEEN_BUDGET: '3' },
      'Build a small todo application',
    );
    expect(short.code, short.stderr + short.stdout).to.equal(3);
    expect(short.stderr).to.include('not enough credits: this run needs 3, 1 available (short by 2)');
  });

  it('loads with require() from CommonJS and with import from an ES module, each with its own build and types', async () => {
    // Installed by the test before: the tarball in `app`.
    expect(existsSync(path.join(app, 'node_modules/@keen/sdk/dist/cjs/index.js'))).to.equal(true);
    writeFileSync(
      path.join(app, 'client.cjs'),
      consumer(
        "const { KeenClient, KeenError, AuthenticationError } = require('@keen/sdk');",
        "require.resolve('@keen/sdk')",
      ),
    );
    writeFileSync(
      path.join(app, 'client.mjs'),
      consumer(
        "import { KeenClient, KeenError, AuthenticationError } from '@keen/sdk';",
        "import.meta.resolve('@keen/sdk')",
      ),
    );

    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 10);
    const key = (await buildApiKey(d, u)).key;
    const env = { KEEN_URL: d.url, KEEN_API_KEY: key };

    // CommonJS, streaming too: on Node 20 that loads `ws` through the CommonJS build.
    const cjs = await example(app, env, 'Build a small todo application [iterations:2]', 'client.cjs');
    expect(cjs.code, cjs.stderr + cjs.stdout).to.equal(0);
    const c = JSON.parse(cjs.stdout) as {
      resolved: string;
      balance: number;
      via: string;
      refused: unknown;
      events: string[];
    };
    expect(c.resolved).to.match(/node_modules\/@keen\/sdk\/dist\/cjs\/index\.js$/);
    expect(c.balance).to.equal(10);
    expect(c.via).to.equal('api_key');
    expect(c.refused).to.deep.equal({ auth: true, keen: true, status: 401 });
    expect(c.events).to.include.members(['agent.phase', 'cost.update']);
    expect(c.events.at(-1)).to.equal('session.status');

    const esm = await example(app, env, '', 'client.mjs');
    expect(esm.code, esm.stderr + esm.stdout).to.equal(0);
    const m = JSON.parse(esm.stdout) as { resolved: string; balance: number; via: string; refused: unknown };
    expect(m.resolved).to.match(/node_modules\/@keen\/sdk\/dist\/index\.js$/);
    expect(m.via).to.equal('api_key');
    expect(m.refused).to.deep.equal({ auth: true, keen: true, status: 401 });
    // The run above was charged: the balance is read again, not cached.
    expect(m.balance).to.be.below(10);

    // Types: tsc resolves the `import` condition to dist/index.d.ts and `require` to dist/cjs/index.d.ts.
    for (const [name, text] of Object.entries(TYPES_CHECK)) writeFileSync(path.join(app, name), text);
    const tsc = path.join(PROJECT_ROOT, 'node_modules/typescript/bin/tsc');
    const checked = await run(process.execPath, [tsc, '-p', 'tsconfig.json', '--listFiles'], { cwd: app }).catch(
      (err: { stdout?: string; stderr?: string }) => {
        throw new Error(`tsc failed on the consumer files:\n${err.stdout ?? ''}${err.stderr ?? ''}`);
      },
    );
    const listed = checked.stdout.split('\n');
    expect(listed.some((f) => f.endsWith('node_modules/@keen/sdk/dist/index.d.ts'))).to.equal(true);
    expect(listed.some((f) => f.endsWith('node_modules/@keen/sdk/dist/cjs/index.d.ts'))).to.equal(true);
  });
});
