import { IN_CI } from '../helpers/env.js';
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { PROJECT_ROOT } from '../../daemon/paths.js';
import { describeStorage } from '../helpers/backends.js';
import { runAdmin as admin, type CliRun } from '../helpers/cli.js';
import { ADMIN, NODE_ARGS, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { TEST_REDIS_URL } from '../helpers/env.js';
import { buildUser, uniqueEmail } from '../helpers/factories.js';
import { createTestSchema } from '../helpers/postgres.js';

const AGENT = ['node', path.join(PROJECT_ROOT, 'examples/agent/agent.js')];
/** The daemon settings a developer's shell might carry: cleared so each test says what it uses. */
const CLEAN_ENV = {
  KEEN_CONFIG: '',
  KEEN_ENV: '',
  KEEN_DATA_DIR: '',
  KEEN_DATABASE_URL: '',
  KEEN_REDIS_URL: '',
  KEEN_PROFILE: '',
  JWT_SECRET: '',
  JWT_PREVIOUS_SECRETS: '',
};

interface Check {
  name: string;
  status: 'ok' | 'warn' | 'fail';
  message: string;
}
const check = (r: CliRun, name: string): Check => (r.json.checks as Check[]).find((c) => c.name === name)!;

/** A fresh config home (XDG_CONFIG_HOME and HOME) so no test sees a real ~/.config/keen. */
function configHome(): { env: Record<string, string>; file: string; cleanup(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'keen-home-'));
  return {
    env: { ...CLEAN_ENV, XDG_CONFIG_HOME: path.join(dir, 'xdg'), HOME: dir },
    file: path.join(dir, 'xdg', 'keen', 'admin.json'),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

function writeConfig(dir: string, config: Record<string, unknown>): string {
  const file = path.join(dir, `gateway-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, stringify(config));
  return file;
}

describeStorage('keen-admin login, profiles and doctor against a real daemon', (backend) => {
  let d: TestDaemon;
  let key: string;
  let configFile: string;
  let home: ReturnType<typeof configHome>;

  before(async () => {
    d = await startDaemon({ backend });
    configFile = writeConfig(d.home.dataDir, {
      data_dir: d.home.dataDir,
      database: { url: d.home.databaseUrl },
      agent: { command: AGENT },
    });
    const init = await admin(['init', '--email', uniqueEmail('ops'), '--config', configFile, '--json'], {
      env: CLEAN_ENV,
    });
    expect(init.code, init.stderr).to.equal(0);
    key = init.json.key;
  });
  beforeEach(() => (home = configHome()));
  afterEach(() => home.cleanup());
  after(async () => d?.stop());

  it('login checks the piped key and saves a 0600 profile; later commands need no KEEN_API_KEY', async () => {
    const r = await admin(['login', '--url', d.url, '--api-key-stdin'], { env: home.env, stdin: `${key}\n` });
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.include('logged in to').and.include('saved profile "default"');
    expect(r.stdout + r.stderr).not.to.include(key);
    expect(statSync(home.file).mode & 0o777).to.equal(0o600);
    expect(statSync(path.dirname(home.file)).mode & 0o777).to.equal(0o700);
    expect(JSON.parse(readFileSync(home.file, 'utf8'))).to.deep.equal({
      default: 'default',
      profiles: { default: { url: d.url, api_key: key } },
    });

    const list = await admin(['tenants', 'list', '--json'], { env: home.env });
    expect(list.code, list.stderr).to.equal(0);
    expect(list.json.success).to.equal(true);
    // The environment still beats the profile: a wrong KEEN_URL is used, and reported as unreachable.
    expect((await admin(['tenants', 'list'], { env: { ...home.env, KEEN_URL: 'http://127.0.0.1:9' } })).code).to.equal(
      3,
    );
  });

  it('keeps several profiles: the first is the default, --profile and KEEN_PROFILE choose another', async () => {
    expect(
      (
        await admin(['login', '--url', 'http://127.0.0.1:9', '--profile', 'dead', '--api-key-stdin'], {
          env: home.env,
          stdin: key,
        })
      ).code,
    ).to.equal(3);
    expect(existsSync(home.file)).to.equal(false);
    expect(
      (await admin(['login', '--url', d.url, '--profile', 'main', '--api-key-stdin'], { env: home.env, stdin: key }))
        .code,
    ).to.equal(0);
    const other = await admin(['login', '--url', d.url, '--profile', 'second', '--api-key-stdin', '--json'], {
      env: home.env,
      stdin: key,
    });
    expect(other.code, other.stderr).to.equal(0);
    expect(other.json).to.include({ profile: 'second', default: false });
    expect(other.stdout).not.to.include(key);
    expect(JSON.parse(readFileSync(home.file, 'utf8')).default).to.equal('main');
    expect((await admin(['tenants', 'list', '--profile', 'second'], { env: home.env })).code).to.equal(0);
    expect((await admin(['tenants', 'list'], { env: { ...home.env, KEEN_PROFILE: 'second' } })).code).to.equal(0);
    const unknown = await admin(['tenants', 'list', '--profile', 'nope'], { env: home.env });
    expect(unknown.code).to.equal(2);
    expect(unknown.stderr).to.include('no profile "nope"');
  });

  it('refuses a profile file that group or others can read, without printing the key', async () => {
    expect((await admin(['login', '--url', d.url, '--api-key-stdin'], { env: home.env, stdin: key })).code).to.equal(0);
    chmodSync(home.file, 0o640);
    const r = await admin(['tenants', 'list', '--verbose'], { env: home.env });
    expect(r.code).to.equal(1);
    expect(r.stderr).to.include('permissions 0640').and.include('too open').and.include(`chmod 600 ${home.file}`);
    expect(r.stdout + r.stderr).not.to.include(key);
    // With the key in the environment the file is not needed, so not read.
    expect(
      (await admin(['tenants', 'list'], { env: { ...home.env, KEEN_URL: d.url, KEEN_API_KEY: key } })).code,
    ).to.equal(0);
  });

  it('logout removes the profile; commands then have no key (exit 2)', async () => {
    expect((await admin(['login', '--url', d.url, '--api-key-stdin'], { env: home.env, stdin: key })).code).to.equal(0);
    expect(
      (await admin(['login', '--url', d.url, '--profile', 'b', '--api-key-stdin'], { env: home.env, stdin: key })).code,
    ).to.equal(0);
    const out = await admin(['logout', '--profile', 'b'], { env: home.env });
    expect(out.code, out.stderr).to.equal(0);
    expect(Object.keys(JSON.parse(readFileSync(home.file, 'utf8')).profiles)).to.deep.equal(['default']);
    expect((await admin(['logout'], { env: home.env })).code).to.equal(0);
    expect(existsSync(home.file)).to.equal(false);
    const r = await admin(['tenants', 'list'], { env: home.env });
    expect(r.code).to.equal(2);
    expect(r.stderr).to.include('keen-admin login');
    expect((await admin(['logout'], { env: home.env })).code).to.equal(1);
  });

  it('login refuses a key without the admin scope, and a wrong key, saving nothing (exit 1)', async () => {
    const u = await buildUser(d);
    const member = (await d.api.post('/v1/api-keys', { name: 'member' }, { token: u.token })).body.key as string;
    const r = await admin(['login', '--url', d.url, '--api-key-stdin'], { env: home.env, stdin: member });
    expect(r.code).to.equal(1);
    expect(r.stderr).to.include('INSUFFICIENT_SCOPE').and.include('lacks the admin scope');
    expect(r.stderr).not.to.include(member);
    const wrong = await admin(['login', '--url', d.url, '--api-key-stdin'], { env: home.env, stdin: 'ak_live_wrong' });
    expect(wrong.code).to.equal(1);
    expect(wrong.stderr).to.include('AUTHENTICATION_ERROR');
    expect(existsSync(home.file)).to.equal(false);
    // No terminal and no --api-key-stdin: nothing to read the key from.
    const noTty = await admin(['login', '--url', d.url], { env: home.env, stdin: key });
    expect(noTty.code).to.equal(2);
    expect(noTty.stderr).to.include('--api-key-stdin');
  });

  it('--api-key on the command line works but warns once on stderr, never printing the key', async () => {
    const r = await admin(['--api-key', key, 'tenants', 'list', '--url', d.url, '--verbose'], { env: home.env });
    expect(r.code, r.stderr).to.equal(0);
    const warnings = r.stderr.split('\n').filter((l) => l.includes('visible in ps'));
    expect(warnings).to.have.length(1);
    expect(warnings[0]).to.include('KEEN_API_KEY').and.include('keen-admin login');
    expect(r.stderr).not.to.include(key);
    const env = await admin(['tenants', 'list'], { env: { ...home.env, KEEN_URL: d.url, KEEN_API_KEY: key } });
    expect(env.stderr).not.to.include('visible in ps');
  });

  it('doctor: every check ok on a healthy setup', async () => {
    const config = writeConfig(d.home.dataDir, {
      data_dir: d.home.dataDir,
      database: { url: d.home.databaseUrl },
      agent: { command: AGENT },
      ...(TEST_REDIS_URL ? { redis: { url: TEST_REDIS_URL } } : {}),
    });
    const r = await admin(['doctor', '--config', config, '--url', d.url, '--json'], {
      env: { ...home.env, JWT_SECRET: d.home.jwtSecret },
    });
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    expect(r.json.ok).to.equal(true);
    const checks = r.json.checks as Check[];
    expect(checks.map((c) => c.name)).to.deep.equal([
      'config',
      'data_dir',
      'database',
      'migrations',
      'redis',
      'agent',
      'sandbox',
      'jwt_secret',
      'mfa_secrets',
      'daemon',
      'clock',
    ]);
    for (const c of checks) expect(c.status, `${c.name}: ${c.message}`).to.equal('ok');
    expect(check(r, 'database').message).to.include(backend);
    expect(check(r, 'clock').message)
      .to.include('database clock is within')
      .and.include(`daemon at ${d.url} is within`);
    if (TEST_REDIS_URL) expect(check(r, 'redis').message).to.include('answers PING');
    expect(r.stdout).not.to.include(d.home.jwtSecret);

    const text = await admin(['doctor', '--config', config, '--url', d.url], {
      env: { ...home.env, JWT_SECRET: d.home.jwtSecret },
    });
    expect(text.code).to.equal(0);
    expect(text.stdout.trim().split('\n')).to.have.length(11);
    expect(text.stdout).to.match(/^ok {4}config {6}/);
  });

  it('doctor: an unmigrated database is a warning naming the pending migrations', async () => {
    let url: string;
    let drop: () => Promise<void> = async () => undefined;
    if (backend === 'postgres') {
      const schema = await createTestSchema();
      url = schema.url;
      drop = () => schema.drop();
    } else {
      const file = path.join(d.home.dataDir, 'empty.db');
      writeFileSync(file, '');
      url = `sqlite:${file}`;
    }
    try {
      const config = writeConfig(d.home.dataDir, {
        data_dir: d.home.dataDir,
        database: { url },
        agent: { command: AGENT },
      });
      const r = await admin(['doctor', '--config', config, '--url', d.url, '--json'], {
        env: { ...home.env, JWT_SECRET: d.home.jwtSecret },
      });
      expect(r.code, r.stderr).to.equal(0);
      expect(check(r, 'database').status).to.equal('ok');
      expect(check(r, 'migrations')).to.include({ status: 'warn' });
      expect(check(r, 'migrations').message)
        .to.match(/pending: 0001_/)
        .and.include('keen-gateway migrate');
    } finally {
      await drop();
    }
  });
});

describe('keen-admin doctor failures', () => {
  let dir: string;
  let home: ReturnType<typeof configHome>;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'keen-doctor-'));
    home = configHome();
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
    home.cleanup();
  });

  it('fails on an unreachable database (exit 1) without printing its password', async () => {
    const config = writeConfig(dir, {
      data_dir: dir,
      database: { url: 'postgres://keen:canary-pw-7731@127.0.0.1:1/keen' },
      agent: { command: AGENT },
    });
    const r = await admin(['doctor', '--config', config, '--url', 'http://127.0.0.1:9', '--json'], {
      env: { ...home.env, JWT_SECRET: 'x'.repeat(40) },
    });
    expect(r.code).to.equal(1);
    expect(r.json.ok).to.equal(false);
    expect(check(r, 'database')).to.include({ status: 'fail' });
    expect(check(r, 'database').message).to.include('postgres://keen:***@127.0.0.1:1/keen');
    expect(r.stdout + r.stderr).not.to.include('canary-pw-7731');
    expect(JSON.parse(r.stderr).error.code).to.equal('CHECK_FAILED');
    const text = await admin(['doctor', '--config', config], {
      env: { ...home.env, JWT_SECRET: 'x'.repeat(40), KEEN_URL: 'http://127.0.0.1:9' },
    });
    expect(text.code).to.equal(1);
    expect(text.stdout).to.match(/^fail {2}database/m);
    expect(text.stdout + text.stderr).not.to.include('canary-pw-7731');
  });

  it('warns on a data directory with mode 0755', async () => {
    const data = path.join(dir, 'data');
    mkdirSync(data, { mode: 0o755 });
    chmodSync(data, 0o755);
    const config = writeConfig(dir, { data_dir: data, agent: { command: AGENT } });
    // --no-daemon: a daemon that does not answer is a failure of its own.
    const r = await admin(['doctor', '--config', config, '--no-daemon', '--json'], {
      env: { ...home.env, JWT_SECRET: 'x'.repeat(40) },
    });
    expect(check(r, 'data_dir')).to.include({ status: 'warn' });
    expect(check(r, 'data_dir').message).to.include('0755').and.include(`chmod 700 ${data}`);
    expect(r.code, r.stdout).to.equal(0); // warnings do not fail
  });

  it('fails a short JWT_SECRET under KEEN_ENV=production (a warning in development), never printing it', async () => {
    const config = writeConfig(dir, { data_dir: dir, agent: { command: AGENT } });
    const secret = 'short-canary-secret';
    const prod = await admin(['doctor', '--config', config, '--url', 'http://127.0.0.1:9', '--json'], {
      env: { ...home.env, KEEN_ENV: 'production', JWT_SECRET: secret },
    });
    expect(prod.code).to.equal(1);
    expect(check(prod, 'jwt_secret')).to.include({ status: 'fail' });
    expect(check(prod, 'jwt_secret').message).to.include('19 bytes').and.include('at least 32');
    expect(prod.stdout + prod.stderr).not.to.include(secret);
    const dev = await admin(['doctor', '--config', config, '--url', 'http://127.0.0.1:9', '--json'], {
      env: { ...home.env, JWT_SECRET: secret },
    });
    expect(check(dev, 'jwt_secret')).to.include({ status: 'warn' });
    // Unset, with the generated file: a warning in development, a failure in production.
    writeFileSync(path.join(dir, 'jwt-secret'), Buffer.alloc(48, 7).toString('base64url') + '\n', { mode: 0o600 });
    const gen = await admin(['doctor', '--config', config, '--url', 'http://127.0.0.1:9', '--json'], { env: home.env });
    expect(check(gen, 'jwt_secret')).to.include({ status: 'warn' });
    expect(check(gen, 'jwt_secret').message).to.include('generated');
    const genProd = await admin(['doctor', '--config', config, '--url', 'http://127.0.0.1:9', '--json'], {
      env: { ...home.env, KEEN_ENV: 'production' },
    });
    expect(check(genProd, 'jwt_secret')).to.include({ status: 'fail' });
  });

  it('names previous JWT secrets during a rotation, fails a short one in production, never printing them', async () => {
    const config = writeConfig(dir, { data_dir: dir, agent: { command: AGENT } });
    const current = 'c'.repeat(40);
    const old = 'previous-canary-' + 'p'.repeat(30);
    const overlap = await admin(['doctor', '--config', config, '--url', 'http://127.0.0.1:9', '--json'], {
      env: { ...home.env, KEEN_ENV: 'production', JWT_SECRET: current, JWT_PREVIOUS_SECRETS: old },
    });
    expect(check(overlap, 'jwt_secret')).to.include({ status: 'ok' });
    expect(check(overlap, 'jwt_secret').message).to.include('1 previous secret still accepted');
    const short = 'short-previous-canary';
    const bad = await admin(['doctor', '--config', config, '--url', 'http://127.0.0.1:9', '--json'], {
      env: { ...home.env, KEEN_ENV: 'production', JWT_SECRET: current, JWT_PREVIOUS_SECRETS: `${old}, ${short}` },
    });
    expect(bad.code).to.equal(1);
    expect(check(bad, 'jwt_secret')).to.include({ status: 'fail' });
    expect(check(bad, 'jwt_secret').message).to.include('entry 2 is 21 bytes');
    for (const r of [overlap, bad])
      expect(r.stdout + r.stderr)
        .not.to.include(old)
        .and.not.to.include(short)
        .and.not.to.include(current);
  });

  it('names the key path of an invalid config, and a missing agent program', async () => {
    const bad = writeConfig(dir, { server: { port: 'eighty' } });
    const r = await admin(['doctor', '--config', bad, '--json'], { env: home.env });
    expect(r.code).to.equal(1);
    expect(r.json.checks).to.have.length(1);
    expect(check(r, 'config')).to.include({ status: 'fail' });
    expect(check(r, 'config').message).to.include('server.port');
    const agent = writeConfig(dir, { data_dir: dir, agent: { command: ['no-such-agent-program-x', './missing.js'] } });
    const a = await admin(['doctor', '--config', agent, '--url', 'http://127.0.0.1:9', '--json'], {
      env: { ...home.env, JWT_SECRET: 'x'.repeat(40) },
    });
    expect(check(a, 'agent')).to.include({ status: 'fail' });
    expect(check(a, 'agent').message).to.include('not found on PATH');
  });

  it('fails the sandbox check when bubblewrap cannot create namespaces, naming the fix; warns on mode none', async () => {
    // A bwrap that fails like one on a kernel without unprivileged user namespaces.
    const bin = path.join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(
      path.join(bin, 'bwrap'),
      '#!/bin/sh\necho "bwrap: setting up uid map: Permission denied" >&2\nexit 1\n',
      { mode: 0o755 },
    );
    const config = writeConfig(dir, { data_dir: dir, agent: { command: AGENT } });
    const env = { ...home.env, JWT_SECRET: 'x'.repeat(40), PATH: `${bin}:${home.env.PATH ?? process.env.PATH}` };
    const r = await admin(['doctor', '--config', config, '--url', 'http://127.0.0.1:9', '--json'], { env });
    expect(r.code).to.equal(1);
    expect(check(r, 'sandbox')).to.include({ status: 'fail' });
    expect(check(r, 'sandbox').message)
      .to.include('setting up uid map')
      .and.include('apt-get install bubblewrap')
      .and.include('agent.sandbox.mode: none');
    const none = writeConfig(dir, { data_dir: dir, agent: { command: AGENT, sandbox: { mode: 'none' } } });
    const w = await admin(['doctor', '--config', none, '--url', 'http://127.0.0.1:9', '--json'], { env });
    expect(check(w, 'sandbox')).to.include({ status: 'warn' });
  });

  it('fails when the configured Redis does not answer, without printing its password', async () => {
    const config = writeConfig(dir, {
      data_dir: dir,
      agent: { command: AGENT },
      redis: { url: 'redis://:redis-canary-99@127.0.0.1:1' },
    });
    const r = await admin(['doctor', '--config', config, '--url', 'http://127.0.0.1:9', '--json'], {
      env: { ...home.env, JWT_SECRET: 'x'.repeat(40) },
    });
    expect(r.code).to.equal(1);
    expect(check(r, 'redis')).to.include({ status: 'fail' });
    expect(r.stdout + r.stderr).not.to.include('redis-canary-99');
  });
});

describe('keen-admin completion, help and passwords', () => {
  it('completion bash is valid bash, mentions every command group and completes from the tree', async () => {
    const r = await admin(['completion', 'bash']);
    expect(r.code, r.stderr).to.equal(0);
    for (const group of [
      'init',
      'login',
      'logout',
      'users',
      'tenants',
      'keys',
      'credits',
      'audit',
      'sessions',
      'doctor',
      'completion',
    ])
      expect(r.stdout).to.include(group);
    const dir = mkdtempSync(path.join(tmpdir(), 'keen-completion-'));
    try {
      const script = path.join(dir, 'keen-admin.bash');
      writeFileSync(script, r.stdout);
      const syntax = spawnSync('bash', ['-n', script], { encoding: 'utf8' });
      expect(syntax.status, syntax.stderr).to.equal(0);
      const complete = (words: string) =>
        spawnSync(
          'bash',
          [
            '-c',
            `source "$1"; COMP_WORDS=(${words}); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); _keen_admin; echo "\${COMPREPLY[*]}"`,
            'x',
            script,
          ],
          { encoding: 'utf8' },
        ).stdout.trim();
      expect(complete('keen-admin use')).to.equal('users');
      expect(complete("keen-admin users ''").split(' ')).to.include.members(['create', 'list', 'set-tier']);
      expect(complete('keen-admin users create --ti')).to.equal('--tier');
      expect(complete("keen-admin users create --tier ''")).to.equal('individual team enterprise');
      expect(complete("keen-admin completion ''")).to.equal('bash zsh fish');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('completion zsh is a #compdef script; an unknown shell is a usage error', async () => {
    const r = await admin(['completion', 'zsh']);
    expect(r.code).to.equal(0);
    expect(r.stdout.startsWith('#compdef keen-admin\n')).to.equal(true);
    expect(r.stdout).to.include("'users/create') reply=(");
    expect((await admin(['completion', 'tcsh'])).code).to.equal(2);
  });

  it('a password is never an argument: --password hunter2 is a usage error (exit 2)', async () => {
    const env = { KEEN_URL: 'http://127.0.0.1:9', KEEN_API_KEY: 'ak_live_unused' };
    const r = await admin(['users', 'create', '--email', 'a@example.test', '--password', 'hunter2'], { env });
    expect(r.code).to.equal(2);
    expect(r.stderr).to.include('--password takes no value').and.not.include('hunter2');
    const glued = await admin(['users', 'create', '--email', 'a@example.test', '--password=hunter2'], { env });
    expect(glued.code).to.equal(2);
    expect(glued.stderr).not.to.include('hunter2');
    const init = await admin(['init', '--email', 'a@example.test', '--password', 'hunter2'], { env: CLEAN_ENV });
    expect(init.code).to.equal(2);
    // --password without a terminal cannot prompt: it says to pipe the password instead.
    const noTty = await admin(['users', 'create', '--email', 'a@example.test', '--password'], { env });
    expect(noTty.code).to.equal(2);
    expect(noTty.stderr).to.include('--password-stdin');
    const help = await admin(['users', 'create', '--help']);
    expect(help.stdout).to.include('--password ').and.include('--password-stdin').and.include('Example:');
  });
});

/** Runs the built CLI on a pseudo-terminal (util-linux `script`), answering each prompt once it is shown. */
function onTerminal(
  args: string[],
  env: Record<string, string>,
  answers: Array<[string, string]>,
): Promise<{ code: number | null; output: string }> {
  const command = [process.execPath, ...NODE_ARGS, ADMIN, ...args]
    .map((a) => `'${a.replace(/'/g, `'\\''`)}'`)
    .join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let output = '';
    let next = 0;
    let searchFrom = 0;
    const onData = (chunk: Buffer) => {
      output += String(chunk);
      const answer = answers[next];
      const at = answer ? output.indexOf(answer[0], searchFrom) : -1;
      if (answer && at >= 0) {
        searchFrom = at + answer[0].length;
        next++;
        child.stdin.write(`${answer[1]}\r`);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('exit', (code) => {
      child.stdin.end();
      resolve({ code, output });
    });
  });
}

const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;

describeStorage('keen-admin interactive password prompt', (backend) => {
  let d: TestDaemon;
  let env: Record<string, string>;
  before(async function () {
    // util-linux's `script` gives the CLI a terminal; Debian always has it. Under CI a missing one fails.
    if (!hasScript) {
      if (IN_CI) throw new Error('`script` (util-linux) is missing: the interactive prompt cannot be tested');
      this.skip();
    }
    d = await startDaemon({ backend });
    const u = await buildUser(d, { role: 'admin' });
    const key = (await d.api.post('/v1/api-keys', { name: 'ops', scopes: ['admin'] }, { token: u.token })).body
      .key as string;
    env = { ...CLEAN_ENV, KEEN_URL: d.url, KEEN_API_KEY: key };
  });
  after(async () => d?.stop());

  it('users create --password asks twice without echo, and the password works', async () => {
    const email = uniqueEmail('tty');
    const password = 'typed-at-a-terminal-42';
    const r = await onTerminal(['users', 'create', '--email', email, '--password'], env, [
      ['Password: ', password],
      ['Repeat password: ', password],
    ]);
    expect(r.code, r.output).to.equal(0);
    expect(r.output).to.include(email);
    expect(r.output).not.to.include(password);
    expect((await d.api.post('/v1/auth/login', { email, password })).status).to.equal(200);
  });

  it('two different answers create nothing (exit 1)', async () => {
    const email = uniqueEmail('tty');
    const r = await onTerminal(['users', 'create', '--email', email, '--password'], env, [
      ['Password: ', 'first-answer-123'],
      ['Repeat password: ', 'second-answer-456'],
    ]);
    expect(r.code).to.equal(1);
    expect(r.output).to.include('do not match').and.not.include('first-answer-123');
    expect((await d.api.post('/v1/auth/login', { email, password: 'first-answer-123' })).status).to.equal(401);
  });
});
