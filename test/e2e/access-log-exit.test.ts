import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify as toYaml } from 'yaml';
import { PROJECT_ROOT } from '../../daemon/paths.js';
import { makeHome, MAIN, NODE_ARGS, type DaemonHome } from '../helpers/daemon.js';
import { freePort } from '../helpers/ports.js';

/**
 * Loaded with `--import` into the daemon: every asynchronous fs.write waits 150 ms before it runs
 * (a slow disk), so the last lines are still in the daemon's buffer, or in a write under way, when
 * it is told to stop; and SIGUSR2 makes the daemon throw an uncaught exception.
 */
const PRELOAD = `
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
const write = fs.write;
fs.write = function (...args) { setTimeout(() => write.apply(fs, args), 150); };
syncBuiltinESMExports();
process.on('SIGUSR2', () => setImmediate(() => { throw new Error('crash-canary'); }));
`;

interface Service {
  url: string;
  child: ChildProcess;
  logFile: string;
  stderr: string[];
  exited: Promise<number | null>;
}

/** `keen-gateway start` at log level info with its standard output appended to a file, as a service runs it. */
async function service(home: DaemonHome, slowDisk: boolean): Promise<Service> {
  const port = await freePort();
  const configFile = path.join(home.dataDir, 'gateway.yaml');
  writeFileSync(
    configFile,
    toYaml({
      env: 'test',
      data_dir: home.dataDir,
      server: { host: '127.0.0.1', port, shutdown_timeout_seconds: 5 },
      database: { url: home.databaseUrl },
      log: { level: 'info' },
      agent: { command: ['node', path.join(PROJECT_ROOT, 'examples/agent/agent.js')] },
    }),
  );
  const preload = path.join(home.dataDir, 'slow-disk.mjs');
  writeFileSync(preload, PRELOAD);
  const logFile = path.join(home.dataDir, 'gateway.log');
  const fd = openSync(logFile, 'a');
  const child = spawn(
    process.execPath,
    [...NODE_ARGS, ...(slowDisk ? ['--import', preload] : []), MAIN, 'start', '--config', configFile],
    {
      cwd: PROJECT_ROOT,
      env: { ...process.env, JWT_SECRET: home.jwtSecret },
      stdio: ['ignore', fd, 'pipe'],
    },
  );
  closeSync(fd);
  const stderr: string[] = [];
  child.stderr!.on('data', (c: Buffer) => stderr.push(String(c)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  const until = Date.now() + 30_000;
  while (
    !(await fetch(`${url}/health/live`).then(
      (r) => r.ok,
      () => false,
    ))
  ) {
    if (child.exitCode !== null || Date.now() > until) throw new Error(`the daemon did not start: ${stderr.join('')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, child, logFile, stderr, exited };
}

/** 200 requests, 20 at a time, each to its own path (404 at info level): the paths, in the order they were sent. */
async function load(url: string, tag: string): Promise<string[]> {
  const paths = Array.from({ length: 200 }, (_, i) => `/v1/${tag}-${i}`);
  for (let i = 0; i < paths.length; i += 20) {
    await Promise.all(paths.slice(i, i + 20).map((p) => fetch(url + p).then((r) => r.text())));
  }
  return paths;
}

/** The paths of the access lines in the log, every line parsed. */
function loggedPaths(file: string): { paths: string[]; lines: Array<Record<string, unknown>> } {
  const text = readFileSync(file, 'utf8');
  expect(text.endsWith('\n'), 'the log ends with a whole line').to.equal(true);
  const lines = text
    .slice(0, -1)
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { paths: lines.filter((l) => l.msg === 'request').map((l) => String(l.path)), lines };
}

describe('access log: no line lost when the daemon stops', function () {
  this.timeout(60_000);
  let home: DaemonHome;
  let svc: Service | null = null;
  beforeEach(async () => {
    home = await makeHome({});
  });
  afterEach(async () => {
    if (svc && svc.child.exitCode === null && svc.child.signalCode === null) svc.child.kill('SIGKILL');
    await svc?.exited;
    svc = null;
    await home.cleanup();
  });

  for (const [signal, slowDisk] of [
    ['SIGTERM', true],
    ['SIGINT', true],
    ['SIGTERM', false],
  ] as const) {
    it(`writes every request's line before exiting 0 on ${signal}${slowDisk ? ', on a slow disk' : ''}`, async () => {
      svc = await service(home, slowDisk);
      const sent = await load(svc.url, signal);
      svc.child.kill(signal);
      expect(await svc.exited).to.equal(0);
      const { paths, lines } = loggedPaths(svc.logFile);
      expect(paths.filter((p) => p.startsWith(`/v1/${signal}-`)))
        .to.have.members(sent)
        .and.have.length(sent.length);
      expect(lines.filter((l) => l.msg === 'shutting down')).to.have.length(1);
      expect(lines.at(-1)).to.include({ msg: 'stopped' });
    });
  }

  it("writes every request's line, and the error, before exiting 1 on an uncaught exception", async () => {
    svc = await service(home, true);
    const sent = await load(svc.url, 'crash');
    svc.child.kill('SIGUSR2');
    expect(await svc.exited).to.equal(1);
    expect(svc.stderr.join('')).to.include('Error: crash-canary').and.include('    at ');
    const { paths, lines } = loggedPaths(svc.logFile);
    expect(paths.filter((p) => p.startsWith('/v1/crash-')))
      .to.have.members(sent)
      .and.have.length(sent.length);
    const fatal = lines.at(-1)!;
    expect(fatal).to.include({ level: 'fatal', msg: 'uncaught exception: exiting' });
    expect((fatal.err as { message: string }).message).to.equal('crash-canary');
  });
});
