import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { chromium, type Browser } from 'playwright-core';
import type { StreamEvent } from '../../sdk/src/index.js';
import { freshSdkCopy, pageServer } from '../browser/support.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { IN_CI } from '../helpers/env.js';
import { buildApiKey, buildUser } from '../helpers/factories.js';
import { grant } from '../helpers/sessions.js';

const run = promisify(execFile);

/** Debian's chromium package (`apt-get install chromium`; .ci/run installs it). */
const CHROMIUM = process.env.KEEN_TEST_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

interface PageResult {
  session_id?: string;
  status?: string;
  events?: Array<{ type: string; seq: number }>;
  error?: string;
}

describe('the SDK in a browser: the example page bundled with esbuild, run in headless Chromium', function () {
  this.timeout(240_000);
  let tmp: string;
  let bundle: string;
  let bundleText: string;
  let inputs: string[];
  let page: Awaited<ReturnType<typeof pageServer>>;
  let d: TestDaemon;
  let browser: Browser | undefined;

  before(async function () {
    if (!existsSync(CHROMIUM)) {
      const why = `no Chromium at ${CHROMIUM}: install Debian's chromium package (apt-get install -y chromium; .ci/run does) or set KEEN_TEST_CHROMIUM`;
      if (IN_CI) throw new Error(why);
      console.log(`      skipped: ${why}`);
      this.skip();
    }
    tmp = mkdtempSync(path.join(tmpdir(), 'keen-sdk-browser-'));
    // The SDK as users get it: built from a fresh copy (its package.json, exports and
    // `browser` field decide what the bundler takes), the example importing '@keen/sdk'.
    const sdk = freshSdkCopy(tmp);
    await run(process.execPath, ['scripts/build.mjs'], { cwd: sdk });
    bundle = path.join(tmp, 'app.js');
    const result = await build({
      entryPoints: [path.join(sdk, 'examples/browser/main.js')],
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: ['chrome120'],
      outfile: bundle,
      metafile: true,
      logLevel: 'silent',
    });
    bundleText = readFileSync(bundle, 'utf8');
    inputs = Object.keys(result.metafile.inputs);
    console.log(`      bundled ${inputs.length} modules into ${bundleText.length} bytes`);

    page = await pageServer({
      '/': { type: 'text/html; charset=utf-8', file: path.join(sdk, 'examples/browser/index.html') },
      '/index.html': { type: 'text/html; charset=utf-8', file: path.join(sdk, 'examples/browser/index.html') },
      '/app.js': { type: 'text/javascript; charset=utf-8', file: bundle },
    });
    d = await startDaemon({ backend: 'sqlite', config: { stream: { allowed_origins: [page.origin] } } });
    page.proxyTo(d.url);
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  });
  after(async () => {
    await browser?.close();
    await page?.close();
    await d?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('bundles the SDK for the browser without `ws` or any node: module', () => {
    // The package's `browser` field maps `ws` to nothing: esbuild lists it as disabled, empty.
    expect(inputs.filter((f) => /node_modules[\\/]ws[\\/]/.test(f) && !f.startsWith('(disabled):'))).to.deep.equal([]);
    expect(inputs.filter((f) => f.startsWith('node:'))).to.deep.equal([]);
    expect(
      inputs.some((f) => /sdk[\\/]dist[\\/]index\.js$/.test(f)),
      inputs.join('\n'),
    ).to.equal(true);
    expect(
      inputs.some((f) => /dist[\\/]cjs[\\/]/.test(f)),
      'the ES modules, not the CommonJS build',
    ).to.equal(false);
    expect(bundleText).not.to.include('ws does not work in the browser');
  });

  /**
   * Opens the example page in a fresh browser context with `credential` in the
   * fragment (it starts a run at once), waits for its outcome, and checks it: the
   * whole stream, as stored, and opened with a ticket, never a header.
   */
  async function runInPage(credential: string, authorization: string, vision: string): Promise<PageResult> {
    const before = page.seen.length;
    const context = await browser!.newContext();
    const tab = await context.newPage();
    const consoleLines: string[] = [];
    tab.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    tab.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
    try {
      const fragment = new URLSearchParams({ credential, vision, budget: '3' });
      await tab.goto(`${page.origin}/index.html#${fragment}`);
      await tab.waitForSelector('body[data-state="done"], body[data-state="failed"]', { timeout: 120_000 });
      const state = await tab.getAttribute('body', 'data-state');
      const result = JSON.parse((await tab.textContent('#result')) ?? '{}') as PageResult;
      const log = (await tab.textContent('#log')) ?? '';
      const why = `state ${state}\n${log}\n${consoleLines.join('\n')}`;
      expect(state, why).to.equal('done');
      expect(result.status, why).to.equal('completed');

      const types = result.events!.map((e) => e.type);
      console.log(`      the page saw ${types.length} events: ${[...new Set(types)].join(', ')}`);
      for (const t of ['agent.phase', 'agent.progress', 'cost.update', 'session.status'])
        expect(types, why).to.include(t);
      expect(types.at(-1)).to.equal('session.status');
      expect(result.events!.map((e) => e.seq)).to.deep.equal(result.events!.map((_, i) => i + 1));
      expect(log).to.match(/^phase {4}EXPLORE$/m);
      expect(log).to.match(/^done {5}completed: charged [\d.]+$/m);

      // Every stored event, once, in order: nothing lost on the way to the page.
      const stored = await d.api.get(`/v1/sessions/${result.session_id}/events?limit=1000`, {
        headers: { authorization },
      });
      expect(stored.status, stored.text).to.equal(200);
      expect(result.events).to.deep.equal(
        (stored.body.events as StreamEvent[]).map((e) => ({ type: e.type, seq: e.seq })),
      );

      // How the page authenticated the stream: a ticket asked for with the credential, then
      // the upgrade with the ticket in the URL, from the page's origin, with no Authorization header.
      const seen = page.seen.slice(before);
      const tickets = seen.filter((s) => !s.upgrade && s.method === 'POST' && s.url === '/v1/stream/tickets');
      expect(tickets.length).to.be.at.least(1);
      for (const s of tickets) expect(s.headers.authorization).to.equal(authorization);
      const upgrades = seen.filter((s) => s.upgrade);
      expect(upgrades.length).to.equal(tickets.length);
      for (const s of upgrades) {
        expect(s.url).to.match(/^\/v1\/stream\?ticket=stk_[A-Za-z0-9_-]{43}$/);
        expect(s.headers.authorization).to.equal(undefined);
        expect(s.headers.origin).to.equal(page.origin);
      }
      return result;
    } finally {
      await context.close();
    }
  }

  it('executes a session with an API key and follows its stream to the end over a ticket, never a header', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 20);
    const key = (await buildApiKey(d, u)).key;
    await runInPage(key, `ApiKey ${key}`, 'Build a small todo application [iterations:3]');
  });

  it('does the same with a user access token', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 20);
    await runInPage(u.token, `Bearer ${u.token}`, 'Build a small todo application [iterations:2]');
  });
});
