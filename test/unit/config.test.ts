import { expect } from 'chai';
import { mkdtempSync, writeFileSync, statSync, readFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig, redactUrl } from '../../daemon/config/load.js';
import { ConfigError } from '../../daemon/config/errors.js';
import { resolveJwtSecret } from '../../daemon/auth/jwt-secret.js';
import { createLogger } from '../../daemon/logger.js';
import { DEFAULT_STREAM_OPTIONS, streamOptionsFromConfig } from '../../daemon/ws/stream-server.js';

const silent = createLogger('silent');

function tmp(): string {
  return mkdtempSync(path.join(tmpdir(), 'keen-cfg-'));
}

function writeYaml(dir: string, text: string): string {
  const file = path.join(dir, 'gateway.yaml');
  writeFileSync(file, text);
  return file;
}

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('config loading', () => {
  it('gives the documented defaults (config.example.yaml) with no file and no environment', () => {
    const cwd = tmp();
    const c = loadConfig({ env: {}, cwd });
    expect(c.server.host).to.equal('127.0.0.1');
    expect(c.server.port).to.equal(8080);
    expect(c.data_dir).to.equal(path.join(cwd, 'data'));
    expect(c.database.url).to.equal(`sqlite:${path.join(cwd, 'data', 'keen.db')}`);
    expect(c.redis.url).to.equal(null);
    expect(c.log.level).to.equal('info');
    expect(c.server.public_url).to.equal('http://127.0.0.1:8080');
    expect(c.workspaces.root).to.equal(path.join(cwd, 'data', 'workspaces'));
    expect(c.tiers.individual).to.deep.equal({
      requests_per_hour: 1000,
      max_concurrent_sessions: 2,
      max_agents_per_session: 10,
    });
    expect(c.tiers.team).to.deep.equal({
      requests_per_hour: 5000,
      max_concurrent_sessions: 10,
      max_agents_per_session: 20,
    });
    expect(c.tiers.enterprise).to.deep.equal({
      requests_per_hour: 50000,
      max_concurrent_sessions: 100,
      max_agents_per_session: 50,
    });
    expect(c.webhooks.allow_private_targets).to.equal(false);
    expect(c.jwt_secret).to.equal(null);
  });

  it('has server timeouts against slow clients and a free-disk threshold, and refuses headers_timeout_ms > request_timeout_ms', () => {
    const c = loadConfig({ env: {}, cwd: tmp() });
    expect(c.server).to.include({
      headers_timeout_ms: 10_000,
      request_timeout_ms: 30_000,
      keep_alive_timeout_ms: 5000,
      max_connections: 0,
      min_free_disk_mb: 100,
    });
    const overrides = { server: { headers_timeout_ms: 5000, request_timeout_ms: 4000 } };
    expect(problemsOf(() => loadConfig({ env: {}, cwd: tmp(), overrides }))).to.deep.equal([
      'server.headers_timeout_ms: must not be longer than server.request_timeout_ms',
    ]);
    expect(
      problemsOf(() => loadConfig({ env: {}, cwd: tmp(), overrides: { server: { headers_timeout_ms: 10 } } })),
    ).to.have.length(1);
  });

  it('lets the environment override the file', () => {
    const dir = tmp();
    const file = writeYaml(dir, 'server:\n  port: 9000\n  host: 0.0.0.0\nlog:\n  level: debug\n');
    const c = loadConfig({
      file,
      env: {
        KEEN_PORT: '9100',
        KEEN_HOST: '127.0.0.2',
        KEEN_DATA_DIR: '/var/lib/keen',
        KEEN_DATABASE_URL: 'postgres://keen@db/keen',
        KEEN_REDIS_URL: 'redis://cache:6379',
        KEEN_PUBLIC_URL: 'https://api.example.test/',
        KEEN_LOG_LEVEL: 'warn',
        JWT_SECRET: 's'.repeat(40),
      },
    });
    expect(c.server.port).to.equal(9100);
    expect(c.server.host).to.equal('127.0.0.2');
    expect(c.data_dir).to.equal('/var/lib/keen');
    expect(c.database.url).to.equal('postgres://keen@db/keen');
    expect(c.redis.url).to.equal('redis://cache:6379');
    expect(c.server.public_url).to.equal('https://api.example.test');
    expect(c.log.level).to.equal('warn');
    expect(c.jwt_secret).to.equal('s'.repeat(40));
  });

  it('keeps partial tier overrides and fills the rest from the defaults', () => {
    const file = writeYaml(tmp(), 'tiers:\n  team:\n    requests_per_hour: 7\n');
    const c = loadConfig({ file, env: {} });
    expect(c.tiers.team).to.deep.equal({
      requests_per_hour: 7,
      max_concurrent_sessions: 10,
      max_agents_per_session: 20,
    });
  });

  it('names the key path of a value of the wrong type', () => {
    const file = writeYaml(tmp(), 'server:\n  port: "eighty"\n');
    expect(problemsOf(() => loadConfig({ file, env: {} }))).to.include('server.port: must be integer');
  });

  it('refuses a non-numeric KEEN_PORT with the key path', () => {
    expect(problemsOf(() => loadConfig({ env: { KEEN_PORT: 'abc' }, cwd: tmp() }))).to.include(
      'server.port: must be integer',
    );
  });

  it('refuses an unknown key, naming it', () => {
    const file = writeYaml(tmp(), 'server:\n  prot: 8080\nbogus: 1\n');
    const problems = problemsOf(() => loadConfig({ file, env: {} }));
    expect(problems).to.include('server.prot: unknown key');
    expect(problems).to.include('bogus: unknown key');
  });

  it('refuses out-of-range and enum values', () => {
    const file = writeYaml(tmp(), 'server:\n  port: 70000\nlog:\n  level: loud\n');
    const problems = problemsOf(() => loadConfig({ file, env: {} }));
    expect(problems).to.include('server.port: must be <= 65535');
    expect(problems.some((p) => p.startsWith('log.level: must be one of'))).to.equal(true);
  });

  it('refuses a JWT secret in the file: secrets come from the environment only', () => {
    const file = writeYaml(tmp(), 'jwt_secret: abc\n');
    expect(problemsOf(() => loadConfig({ file, env: {} }))).to.include('jwt_secret: unknown key');
  });

  it('reports a missing file, a YAML syntax error and a non-mapping document', () => {
    expect(problemsOf(() => loadConfig({ file: '/nonexistent/keen.yaml', env: {} }))[0]).to.match(
      /config file not found/,
    );
    expect(problemsOf(() => loadConfig({ file: writeYaml(tmp(), 'server: [\n'), env: {} }))[0]).to.match(
      /not valid YAML/,
    );
    expect(problemsOf(() => loadConfig({ file: writeYaml(tmp(), '- a\n- b\n'), env: {} }))[0]).to.match(
      /must be a mapping/,
    );
  });

  it('accepts an empty file as all defaults', () => {
    const c = loadConfig({ file: writeYaml(tmp(), ''), env: {} });
    expect(c.server.port).to.equal(8080);
  });

  it('refuses database and redis URLs of unknown schemes', () => {
    expect(problemsOf(() => loadConfig({ env: { KEEN_DATABASE_URL: 'mysql://x' }, cwd: tmp() }))[0]).to.match(
      /^database\.url/,
    );
    expect(problemsOf(() => loadConfig({ env: { KEEN_REDIS_URL: 'http://x' }, cwd: tmp() }))[0]).to.match(
      /^redis\.url/,
    );
  });

  it('resolves relative paths from the config file folder', () => {
    const dir = tmp();
    const file = writeYaml(
      dir,
      'data_dir: state\nagent:\n  command: ["node", "agents/run.js", "--flag"]\ndatabase:\n  url: "sqlite:db/k.db"\n',
    );
    const c = loadConfig({ file, env: {} });
    expect(c.data_dir).to.equal(path.join(dir, 'state'));
    expect(c.agent.command).to.deep.equal(['node', path.join(dir, 'agents/run.js'), '--flag']);
    expect(c.database.url).to.equal(`sqlite:${path.join(dir, 'db/k.db')}`);
  });

  it('derives the public URL from host and port, bracketing IPv6', () => {
    const c = loadConfig({ env: { KEEN_HOST: '::1', KEEN_PORT: '81' }, cwd: tmp() });
    expect(c.server.public_url).to.equal('http://[::1]:81');
  });

  it("gives the documented stream limits by default, the same as the stream server's own defaults", () => {
    const c = loadConfig({ env: {}, cwd: tmp() });
    expect(c.stream).to.deep.equal({
      allowed_origins: [],
      max_connections_per_user: 20,
      max_subscriptions_per_connection: 100,
      max_buffered_bytes: 1048576,
      ping_interval_seconds: 30,
      credential_recheck_seconds: 5,
      messages_per_second: 20,
      message_burst: 50,
    });
    const {
      shutdownGraceMs: _s,
      slowCloseGraceMs: _g,
      reconcileIntervalMs: _r,
      ...configurable
    } = DEFAULT_STREAM_OPTIONS;
    expect(streamOptionsFromConfig(c.stream)).to.deep.equal(configurable);
  });

  it('maps stream limits from the file to the stream server options, keeping the other defaults', () => {
    const file = writeYaml(
      tmp(),
      'stream:\n  max_connections_per_user: 3\n  ping_interval_seconds: 0.5\n  messages_per_second: 2.5\n',
    );
    const c = loadConfig({ file, env: {} });
    expect(c.stream.max_connections_per_user).to.equal(3);
    expect(c.stream.max_subscriptions_per_connection).to.equal(100);
    expect(streamOptionsFromConfig(c.stream)).to.include({
      maxConnectionsPerUser: 3,
      pingIntervalMs: 500,
      messagesPerSecond: 2.5,
      maxSubscriptions: 100,
      recheckIntervalMs: 5000,
    });
  });

  it('refuses stream limits out of range or of the wrong type, naming the key path', () => {
    const zero = writeYaml(tmp(), 'stream:\n  max_connections_per_user: 0\n');
    expect(problemsOf(() => loadConfig({ file: zero, env: {} }))).to.deep.equal([
      'stream.max_connections_per_user: must be >= 1',
    ]);
    const text = writeYaml(tmp(), 'stream:\n  max_connections_per_user: "20"\n');
    expect(problemsOf(() => loadConfig({ file: text, env: {} }))).to.deep.equal([
      'stream.max_connections_per_user: must be integer',
    ]);
    const others = writeYaml(
      tmp(),
      'stream:\n  max_subscriptions_per_connection: 1.5\n  max_buffered_bytes: 1023\n  ping_interval_seconds: 0\n  credential_recheck_seconds: 3601\n  messages_per_second: 0\n  message_burst: 0\n',
    );
    expect(problemsOf(() => loadConfig({ file: others, env: {} }))).to.have.members([
      'stream.max_subscriptions_per_connection: must be integer',
      'stream.max_buffered_bytes: must be >= 1024',
      'stream.ping_interval_seconds: must be > 0',
      'stream.credential_recheck_seconds: must be <= 3600',
      'stream.messages_per_second: must be > 0',
      'stream.message_burst: must be >= 1',
    ]);
  });

  it('redacts passwords from URLs', () => {
    expect(redactUrl('postgres://keen:hunter2@db:5432/keen')).to.equal('postgres://keen:***@db:5432/keen');
    expect(redactUrl('postgres://keen@db/keen')).to.equal('postgres://keen@db/keen');
    expect(redactUrl('not a url //u:p@h')).to.equal('not a url //u:p@h'.replace('u:p@', 'u:***@'));
  });
});

describe('JWT secret resolution', () => {
  it('generates a secret once into the data dir with mode 0600 and reuses it', () => {
    const dir = tmp();
    const a = resolveJwtSecret({ provided: null, env: 'development', dataDir: dir, logger: silent });
    const b = resolveJwtSecret({ provided: null, env: 'development', dataDir: dir, logger: silent });
    expect(a.length).to.be.at.least(32);
    expect(a.equals(b)).to.equal(true);
    expect(statSync(path.join(dir, 'jwt-secret')).mode & 0o777).to.equal(0o600);
  });

  it('tightens a secret file readable by others', () => {
    const dir = tmp();
    resolveJwtSecret({ provided: null, env: 'development', dataDir: dir, logger: silent });
    chmodSync(path.join(dir, 'jwt-secret'), 0o644);
    resolveJwtSecret({ provided: null, env: 'development', dataDir: dir, logger: silent });
    expect(statSync(path.join(dir, 'jwt-secret')).mode & 0o777).to.equal(0o600);
  });

  it('refuses a truncated secret file', () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'jwt-secret'), 'c2hvcnQ\n', { mode: 0o600 });
    expect(() => resolveJwtSecret({ provided: null, env: 'development', dataDir: dir, logger: silent })).to.throw(
      ConfigError,
      /shorter than 32/,
    );
  });

  it('uses JWT_SECRET when given, and never writes it to disk', () => {
    const dir = tmp();
    const s = resolveJwtSecret({ provided: 'x'.repeat(32), env: 'production', dataDir: dir, logger: silent });
    expect(s.toString()).to.equal('x'.repeat(32));
    expect(() => readFileSync(path.join(dir, 'jwt-secret'))).to.throw();
  });

  it('stops a production daemon without a secret or with a short one', () => {
    expect(() => resolveJwtSecret({ provided: null, env: 'production', dataDir: tmp(), logger: silent })).to.throw(
      ConfigError,
      /required/,
    );
    expect(() => resolveJwtSecret({ provided: 'short', env: 'production', dataDir: tmp(), logger: silent })).to.throw(
      ConfigError,
      /at least 32 bytes/,
    );
  });

  it('accepts a short secret outside production, with a warning', () => {
    const lines: string[] = [];
    const logger = createLogger('warn', { write: (s: string) => lines.push(s) } as never);
    resolveJwtSecret({ provided: 'short', env: 'development', dataDir: tmp(), logger });
    expect(lines.join('')).to.match(/shorter than 32 bytes/);
    expect(lines.join('')).not.to.include('short"');
  });
});
