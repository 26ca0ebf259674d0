import { expect } from 'chai';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { stringify } from 'yaml';
import { AuditCheckpointer } from '../../daemon/audit/checkpoints.js';
import { AuditRetention } from '../../daemon/audit/retention.js';
import { totpNow } from '../../daemon/auth/totp.js';
import { readTar, writeTar } from '../../daemon/backup/tar.js';
import { systemClock } from '../../daemon/clock.js';
import { createLogger } from '../../daemon/logger.js';
import { PROJECT_ROOT } from '../../daemon/paths.js';
import { Database } from '../../daemon/storage/database.js';
import { AuditRepository } from '../../daemon/storage/repos/audit.js';
import { runAdmin, type CliRun } from '../helpers/cli.js';
import { MAIN, makeHome, NODE_ARGS, spawnDaemon, type ChildDaemon, type DaemonHome } from '../helpers/daemon.js';
import { uniqueEmail } from '../helpers/factories.js';

/** Each step spawns Node processes (CLI, daemon): allow for a busy machine. */
const STEP_TIMEOUT = 120_000;
const PASSWORD = 'a-long-enough-password';
/** Without JWT_SECRET the daemon generates `<data_dir>/jwt-secret`: the file a backup must carry. */
const GENERATED_SECRET = { JWT_SECRET: '' };
/** Grants in a tight loop must not meet the hourly request limit; checkpoints every second race the backup. */
const DAEMON_CONFIG = {
  tiers: { enterprise: { requests_per_hour: 1_000_000 } },
  audit: { checkpoint_interval_seconds: 1 },
};

/** `keen-gateway ARGS` as operators run it. */
function runGateway(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...NODE_ARGS, MAIN, ...args], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, ...GENERATED_SECRET, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += String(c)));
    child.stderr.on('data', (c) => (stderr += String(c)));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr, json: null }));
  });
}

function writeConfig(home: DaemonHome, extra: Record<string, unknown> = {}): string {
  const file = path.join(home.dataDir, 'gateway.yaml');
  writeFileSync(
    file,
    stringify({ env: 'test', data_dir: home.dataDir, database: { url: home.databaseUrl }, ...extra }),
  );
  return file;
}

/** Every file under `dir` (recursively) with its sha256, but the lock the restore itself takes. */
function digest(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (!/^daemon\.(lock|pid)/.test(e.name))
        out[path.relative(dir, p)] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/**
 * Unpacks a backup, lets `edit` change its files (by member name), then packs it
 * again; with `fixManifest` the manifest's sizes and hashes are brought up to
 * date, as an attacker who understands the format would.
 */
function repack(
  from: string,
  to: string,
  edit: (file: (name: string) => string, manifest: any) => void,
  fixManifest: boolean,
): void {
  const dir = mkdtempSync(path.join(tmpdir(), 'keen-repack-'));
  try {
    const members = readTar(from, (name) => path.join(dir, name.replace('/', '__')));
    const file = (name: string) => path.join(dir, name.replace('/', '__'));
    const manifest = JSON.parse(readFileSync(file('manifest.json'), 'utf8'));
    edit(file, manifest);
    if (fixManifest)
      for (const m of manifest.members)
        Object.assign(m, { size: statSync(file(m.name)).size, sha256: sha256(file(m.name)) });
    writeFileSync(file('manifest.json'), JSON.stringify(manifest));
    rmSync(to, { force: true });
    writeTar(
      to,
      members.map((m) => ({ name: m.name, path: file(m.name) })),
      { mode: 0o600 },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Byte offset of a member's content in a tar file. */
function contentOffset(tar: string, member: string): number {
  const buf = readFileSync(tar);
  let pos = 0;
  while (pos < buf.length) {
    const name = buf
      .subarray(pos, pos + 100)
      .toString('utf8')
      .replace(/\0.*$/s, '');
    const size = parseInt(
      buf
        .subarray(pos + 124, pos + 136)
        .toString('utf8')
        .replace(/\0.*$/s, '')
        .trim(),
      8,
    );
    if (name === member) return pos + 512;
    pos += 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error(`${member} not in ${tar}`);
}

describe('keen-admin backup and keen-gateway restore (SQLite, real processes)', () => {
  const homes: DaemonHome[] = [];
  const daemons: ChildDaemon[] = [];
  let scratch: string;
  let home: DaemonHome;
  let configFile: string;
  let adminKey: string;
  let backupFile: string;
  let manifest: any;
  let user: { id: string; email: string; totpSecret: string };
  /** Grants answered before the backup process started: in the backup. */
  let prior: string[];
  /** Grants sent after the backup process had exited: not in it. */
  let afterwards: string[];
  let instanceId: string;
  let restoredHome: DaemonHome;

  const newHome = async () => {
    const h = await makeHome({});
    homes.push(h);
    return h;
  };
  const start = async (h: DaemonHome, config: Record<string, unknown> = {}) => {
    const d = await spawnDaemon({ home: h, env: GENERATED_SECRET, config: { ...DAEMON_CONFIG, ...config } });
    daemons.push(d);
    return d;
  };
  const stop = async (d: ChildDaemon) => expect(await d.kill('SIGTERM')).to.equal(0);
  const grant = async (d: ChildDaemon, amount: number) => {
    const r = await d.api.post(
      '/v1/admin/credits/grant',
      { user_id: user.id, amount, reason: 'load' },
      { apiKey: adminKey },
    );
    if (r.status !== 201) throw new Error(`grant: ${r.status} ${r.text}`);
    return r.body.transaction.id as string;
  };
  const ledgerIds = (dbFile: string): Set<string> => {
    const db = new BetterSqlite3(dbFile, { readonly: true, fileMustExist: true });
    try {
      return new Set(
        (db.prepare('select id from credit_ledger where user_id = ?').all(user.id) as Array<{ id: string }>).map(
          (r) => r.id,
        ),
      );
    } finally {
      db.close();
    }
  };

  before(() => (scratch = mkdtempSync(path.join(tmpdir(), 'keen-backups-'))));
  after(async () => {
    for (const d of daemons) await d.cleanup();
    for (const h of homes) await h.cleanup();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('backs up a running daemon under concurrent writes: one tar, mode 0600, with the database, secrets and audit archive', async function () {
    this.timeout(STEP_TIMEOUT);
    home = await newHome();
    configFile = writeConfig(home);
    const init = await runAdmin(['init', '--email', uniqueEmail('ops'), '--config', configFile, '--json'], {
      env: GENERATED_SECRET,
    });
    expect(init.code, init.stderr).to.equal(0);
    adminKey = init.json.key;

    // A retention cut and a signed checkpoint before the daemon runs: the backup must carry both.
    const database = new Database({
      url: home.databaseUrl,
      poolMax: 1,
      connectTimeoutMs: 3000,
      busyTimeoutMs: 3000,
      logger: createLogger('silent'),
    });
    try {
      const archiveDir = path.join(home.dataDir, 'audit');
      const later = { now: () => Date.now() + 86_400_000 };
      const cut = await new AuditRetention({
        database,
        audits: new AuditRepository(database),
        clock: later,
        logger: createLogger('silent'),
        archiveDir,
        maxAgeMs: 1000,
      }).runOnce();
      expect(cut?.entries).to.be.greaterThan(0);
      await new AuditCheckpointer({
        audits: new AuditRepository(database),
        clock: systemClock,
        logger: createLogger('silent'),
        dataDir: archiveDir,
      }).checkpointNow();
    } finally {
      await database.close();
    }

    const d = await start(home);
    instanceId = readFileSync(path.join(home.dataDir, 'instance-id'), 'utf8').trim();
    expect(existsSync(path.join(home.dataDir, 'jwt-secret'))).to.equal(true);
    // A user with a password and TOTP: the sealed TOTP secret only opens with the generated jwt-secret.
    const email = uniqueEmail('backup');
    const created = await d.api.post(
      '/v1/admin/users',
      { email, password: PASSWORD, tier: 'team' },
      { apiKey: adminKey },
    );
    expect(created.status, created.text).to.equal(201);
    const login = await d.api.post('/v1/auth/login', { email, password: PASSWORD });
    const token = login.body.tokens.access_token as string;
    const setup = await d.api.post('/v1/auth/mfa/setup', {}, { token });
    expect(
      (await d.api.post('/v1/auth/mfa/enable', { token: totpNow(setup.body.secret, Date.now()) }, { token })).status,
    ).to.equal(200);
    user = { id: created.body.user.id, email, totpSecret: setup.body.secret };
    prior = [await grant(d, 10)];

    // Load: four writers granting 1 credit each, back to back, while the backup runs.
    let loading = true;
    let t0 = Infinity;
    let t1 = Infinity;
    const done: Array<{ id: string; sent: number; answered: number }> = [];
    const writer = async () => {
      while (loading) {
        const sent = Date.now();
        const id = await grant(d, 1);
        done.push({ id, sent, answered: Date.now() });
      }
    };
    const writers = [writer(), writer(), writer(), writer()];
    await new Promise((r) => setTimeout(r, 300));
    backupFile = path.join(scratch, 'keen.tar');
    t0 = Date.now();
    const b = await runAdmin(['backup', '--config', configFile, '--to', backupFile, '--json'], {
      env: GENERATED_SECRET,
    });
    t1 = Date.now();
    await new Promise((r) => setTimeout(r, 200));
    loading = false;
    await Promise.all(writers);
    expect(b.code, b.stderr).to.equal(0);
    expect(
      done.filter((g) => g.answered > t0 && g.sent < t1).length,
      'grants answered while the backup ran',
    ).to.be.greaterThan(0);
    prior.push(...done.filter((g) => g.answered < t0).map((g) => g.id));
    afterwards = [...done.filter((g) => g.sent > t1).map((g) => g.id), await grant(d, 1000)];

    expect(statSync(backupFile).mode & 0o777).to.equal(0o600);
    manifest = b.json.manifest;
    expect(b.json.file).to.equal(backupFile);
    expect(manifest).to.include({ format: 'keen-gateway-backup', version: 1, jwt_secret_file: true });
    expect(manifest.source.database).to.equal(home.databaseUrl);
    const names = manifest.members.map((m: { name: string }) => m.name);
    expect(names).to.include.members([
      'keen.db',
      'data/jwt-secret',
      'data/instance-id',
      'audit/audit-signing-key.pem',
      'audit/audit-checkpoints.jsonl',
    ]);
    expect(names.filter((n: string) => /^audit\/audit-\d{12}-\d{12}\.jsonl$/.test(n))).to.have.length(1);
    expect(manifest.counts.users).to.equal(2);
    expect(manifest.counts.audit_archived_entries).to.be.greaterThan(0);
    expect(manifest.counts.credit_ledger_entries).to.be.at.least(prior.length);

    // Plain tar: the manifest reads with tar itself, the members are the manifest's, each mode 0600.
    const listed: string[] = [];
    const out = mkdtempSync(path.join(scratch, 'x-'));
    readTar(backupFile, (name) => (listed.push(name), path.join(out, name.replace('/', '__'))));
    expect(listed[0]).to.equal('manifest.json');
    expect(listed.slice(1)).to.deep.equal(names);
    expect(JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8'))).to.deep.equal(manifest);
    // ... and tar itself reads it the same.
    expect(execFileSync('tar', ['-tf', backupFile], { encoding: 'utf8' }).trim().split('\n')).to.deep.equal(listed);
    expect(JSON.parse(execFileSync('tar', ['-xOf', backupFile, 'manifest.json'], { encoding: 'utf8' }))).to.deep.equal(
      manifest,
    );
    expect(readFileSync(path.join(out, 'data__jwt-secret'), 'utf8')).to.equal(
      readFileSync(path.join(home.dataDir, 'jwt-secret'), 'utf8'),
    );
    for (const f of readdirSync(out)) expect(statSync(path.join(out, f)).mode & 0o777, f).to.equal(0o600);
    const snapshotIds = ledgerIds(path.join(out, 'keen.db'));
    for (const id of prior) expect(snapshotIds.has(id), `grant ${id} answered before the backup`).to.equal(true);
    for (const id of afterwards) expect(snapshotIds.has(id), `grant ${id} sent after the backup`).to.equal(false);

    // People's output: a line, a table of members, the counts; a second run does not overwrite.
    const again = await runAdmin(['backup', '--config', configFile, '--to', backupFile], { env: GENERATED_SECRET });
    expect(again.code).to.equal(1);
    expect(again.stderr).to.include('ALREADY_EXISTS').and.include('--force');
    const text = await runAdmin(['backup', '--config', configFile, '--to', path.join(scratch, 'people.tar')], {
      env: GENERATED_SECRET,
    });
    expect(text.code, text.stderr).to.equal(0);
    expect(text.stdout).to.match(
      /^backup written: .*people\.tar \(\d+ bytes, mode 0600\)\nMEMBER\s+SIZE\s+SHA256\nkeen\.db\s+\d+\s+[0-9a-f]{64}\n/,
    );
    expect(text.stdout).to.match(
      /\d+ users, \d+ ledger entries, \d+ audit entries \+ \d+ archived \(head seq \d+\)\n$/,
    );
  });

  it('restore refuses while the daemon runs on the data directory, and changes nothing', async function () {
    this.timeout(STEP_TIMEOUT);
    const d = daemons[0]!;
    const r = await runGateway(['restore', backupFile, '--config', configFile, '--force']);
    expect(r.code).to.equal(1);
    expect(r.stdout).to.match(/^FAIL {2}daemon/);
    expect(r.stderr).to.include('restore refused').and.include(`pid ${d.child.pid}`).and.include('stop it');
    expect(d.child.exitCode).to.equal(null);
    expect((await d.api.get('/health/ready')).status).to.equal(200);
    expect(
      readdirSync(home.dataDir).filter((f) => f.startsWith('.restore-') || f.includes('.before-restore-')),
    ).to.deep.equal([]);
    await stop(d);
  });

  it('restores into a fresh data directory: checks pass, the daemon starts, the data before the backup is there and verifies', async function () {
    this.timeout(STEP_TIMEOUT);
    restoredHome = await newHome();
    // The audit archive elsewhere than <data_dir>/audit: restore follows the config.
    const auditDir = path.join(restoredHome.dataDir, 'elsewhere', 'audit');
    const config = writeConfig(restoredHome, { audit: { archive_dir: auditDir } });
    const r = await runGateway(['restore', backupFile, '--config', config]);
    expect(r.code, r.stderr + r.stdout).to.equal(0);
    for (const check of [
      'daemon',
      'archive',
      'checksums',
      'integrity',
      'counts',
      'schema',
      'ledger',
      'audit',
      'secrets',
    ]) {
      expect(r.stdout, check).to.match(new RegExp(`^ok {4}${check} `, 'm'));
    }
    expect(r.stdout).to.match(
      /^ok {4}audit +chain intact: \d+ entries \+ \d+ archived .*\d+ signed checkpoints verified/m,
    );
    expect(r.stdout).to.include('all 1 sealed TOTP secrets open with');
    expect(r.stdout).to.include('restore complete');
    expect(r.stdout).not.to.include('moved aside');
    expect(readdirSync(restoredHome.dataDir).filter((f) => f.startsWith('.restore-'))).to.deep.equal([]);
    for (const f of ['keen.db', 'jwt-secret', 'instance-id'])
      expect(statSync(path.join(restoredHome.dataDir, f)).mode & 0o777, f).to.equal(0o600);
    expect(readdirSync(auditDir)).to.include.members(['audit-signing-key.pem', 'audit-checkpoints.jsonl']);
    expect(readFileSync(path.join(restoredHome.dataDir, 'instance-id'), 'utf8').trim()).to.equal(instanceId);

    const d = await start(restoredHome, { audit: { archive_dir: auditDir, checkpoint_interval_seconds: 1 } });
    // The TOTP secret was sealed under the generated jwt-secret: signing in proves it came back.
    const login = await d.api.post('/v1/auth/login', {
      email: user.email,
      password: PASSWORD,
      mfa_token: totpNow(user.totpSecret, Date.now() + 30_000),
    });
    expect(login.status, login.text).to.equal(200);
    const ids = ledgerIds(path.join(restoredHome.dataDir, 'keen.db'));
    for (const id of prior) expect(ids.has(id), id).to.equal(true);
    for (const id of afterwards) expect(ids.has(id), id).to.equal(false);
    const balance = await d.api.get(`/v1/admin/credits/balance?user_id=${user.id}`, { apiKey: adminKey });
    expect(balance.status, balance.text).to.equal(200);
    // One grant of 10, then grants of 1: the balance is what the snapshot's ledger says.
    expect(balance.body.balance).to.equal(10 + ids.size - 1);
    const env = { KEEN_URL: d.url, KEEN_API_KEY: adminKey };
    const credits = await runAdmin(['credits', 'verify'], { env });
    expect(credits.code, credits.stderr).to.equal(0);
    expect(credits.stdout).to.equal('ledger consistent\n');
    const audit = await runAdmin(['audit', 'verify', '--json'], { env });
    expect(audit.code, audit.stderr).to.equal(0);
    expect(audit.json.ok).to.equal(true);
    expect(audit.json.archived_entries).to.equal(manifest.counts.audit_archived_entries);
    expect(audit.json.checkpoints.checked).to.be.greaterThan(0);
    await stop(d);
  });

  it('restores onto its own data directory: refused without --force; with it the old files move aside and the later writes are gone', async function () {
    this.timeout(STEP_TIMEOUT);
    const was = digest(home.dataDir);
    const refused = await runGateway(['restore', backupFile, '--config', configFile]);
    expect(refused.code).to.equal(1);
    expect(refused.stdout).to.match(/^FAIL {2}daemon .*keen\.db exists; pass --force/m);
    expect(digest(home.dataDir)).to.deep.equal(was);

    const r = await runGateway(['restore', backupFile, '--config', configFile, '--force']);
    expect(r.code, r.stderr + r.stdout).to.equal(0);
    const aside = readdirSync(home.dataDir).filter((f) => f.includes('.before-restore-'));
    expect(
      aside.some((f) => /^keen\.db\.before-restore-[\dT-]+Z$/.test(f)),
      aside.join(', '),
    ).to.equal(true);
    // The secrets did not change: restored in place, no copy aside.
    expect(aside.filter((f) => !f.startsWith('keen.db'))).to.deep.equal([]);
    const oldDb = path.join(home.dataDir, aside.find((f) => /^keen\.db\.before-restore-[\dT-]+Z$/.test(f))!);
    expect(sha256(oldDb)).to.equal(was['keen.db']);
    expect(
      readdirSync(path.join(home.dataDir, 'audit')).some((f) =>
        f.startsWith('audit-checkpoints.jsonl.before-restore-'),
      ),
    ).to.equal(true);

    const d = await start(home);
    const ids = ledgerIds(path.join(home.dataDir, 'keen.db'));
    for (const id of afterwards) expect(ids.has(id), id).to.equal(false);
    for (const id of prior) expect(ids.has(id), id).to.equal(true);
    const env = { KEEN_URL: d.url, KEEN_API_KEY: adminKey };
    expect((await runAdmin(['credits', 'verify'], { env })).code).to.equal(0);
    const audit = await runAdmin(['audit', 'verify'], { env });
    expect(audit.code, audit.stderr).to.equal(0);
    expect(audit.stdout).to.match(/^chain intact: /);
    await stop(d);
  });

  describe('a backup that does not check out is refused, and nothing in the data directory changes', () => {
    let target: DaemonHome;
    let config: string;
    let was: Record<string, string>;

    before(() => {
      target = restoredHome;
      config = path.join(target.dataDir, 'gateway.yaml');
      was = digest(target.dataDir);
    });
    afterEach(() => {
      expect(digest(target.dataDir)).to.deep.equal(was);
      expect(
        readdirSync(target.dataDir).filter((f) => f.startsWith('.restore-') || f.includes('.before-restore-')),
      ).to.deep.equal([]);
    });

    const refused = async (file: string, check: string, message: RegExp) => {
      const r = await runGateway(['restore', file, '--config', config, '--force']);
      expect(r.code, r.stdout + r.stderr).to.equal(1);
      expect(r.stdout).to.match(new RegExp(`^FAIL {2}${check} `, 'm'));
      expect(r.stdout + r.stderr).to.match(message);
      expect(r.stderr).to.include('nothing was replaced');
      return r;
    };

    it('a byte flipped in keen.db: the checksum', async function () {
      this.timeout(STEP_TIMEOUT);
      const bad = path.join(scratch, 'flipped.tar');
      copyFileSync(backupFile, bad);
      const buf = readFileSync(bad);
      const at = contentOffset(bad, 'keen.db') + 5000;
      buf[at] = buf[at]! ^ 0xff;
      writeFileSync(bad, buf);
      await refused(bad, 'checksums', /keen\.db: sha256 [0-9a-f]{64} does not match the manifest's/);
    });

    it('an edited manifest: a hash, a count, an extra member, a missing one', async function () {
      this.timeout(STEP_TIMEOUT);
      const hash = path.join(scratch, 'hash.tar');
      repack(
        backupFile,
        hash,
        (_f, m) => (m.members.find((x: { name: string }) => x.name === 'data/jwt-secret').sha256 = '0'.repeat(64)),
        false,
      );
      await refused(hash, 'checksums', /data\/jwt-secret: sha256 .* does not match/);
      const count = path.join(scratch, 'count.tar');
      repack(backupFile, count, (_f, m) => (m.counts.users += 1), false);
      await refused(count, 'counts', /users 2 \(manifest: 3\)/);
      const missing = path.join(scratch, 'missing.tar');
      repack(
        backupFile,
        missing,
        (_f, m) => m.members.push({ name: 'data/instance-id-2', size: 1, sha256: '0'.repeat(64) }),
        false,
      );
      await refused(missing, 'checksums', /data\/instance-id-2 is listed in manifest\.json but missing/);
      const unlisted = path.join(scratch, 'unlisted.tar');
      repack(
        backupFile,
        unlisted,
        (_f, m) => (m.members = m.members.filter((x: { name: string }) => x.name !== 'data/instance-id')),
        false,
      );
      await refused(unlisted, 'checksums', /data\/instance-id is in the archive but not listed/);
    });

    it('consistent checksums over changed contents: the ledger, the audit chain, the secret', async function () {
      this.timeout(STEP_TIMEOUT);
      const edit = (sqlText: string) => (file: (name: string) => string) => {
        const db = new BetterSqlite3(file('keen.db'));
        db.exec(sqlText);
        db.close();
      };
      const ledger = path.join(scratch, 'ledger.tar');
      repack(
        backupFile,
        ledger,
        edit(`update credit_accounts set balance = balance + 1000000 where user_id = '${user.id}'`),
        true,
      );
      await refused(ledger, 'ledger', /mismatch\(es\): user usr_\S+ balance/);
      const audit = path.join(scratch, 'audit.tar');
      repack(
        backupFile,
        audit,
        edit("update audit_log set action = 'credits.forged' where seq = (select max(seq) from audit_log)"),
        true,
      );
      await refused(audit, 'audit', /audit chain broken at seq \d+ .*hash mismatch/);
      const secret = path.join(scratch, 'secret.tar');
      repack(
        backupFile,
        secret,
        (file) => writeFileSync(file('data/jwt-secret'), Buffer.alloc(48, 7).toString('base64url') + '\n'),
        true,
      );
      await refused(secret, 'secrets', /1 of 1 sealed TOTP secrets do not open/);
    });

    it('not a backup at all, a truncated one, a member outside the format', async function () {
      this.timeout(STEP_TIMEOUT);
      const junk = path.join(scratch, 'junk.tar');
      writeFileSync(junk, Buffer.alloc(4096, 1));
      await refused(junk, 'archive', /checksum does not match|not a ustar/);
      const cut = path.join(scratch, 'cut.tar');
      writeFileSync(cut, readFileSync(backupFile).subarray(0, contentOffset(backupFile, 'keen.db') + 1000));
      await refused(cut, 'archive', /truncated/);
      const evil = path.join(scratch, 'evil.tar');
      const dir = mkdtempSync(path.join(scratch, 'evil-'));
      writeFileSync(path.join(dir, 'x'), 'x');
      writeTar(evil, [{ name: '../escape', path: path.join(dir, 'x') }], { mode: 0o600 });
      await refused(evil, 'archive', /unexpected member "\.\.\/escape"/);
      expect(existsSync(path.join(target.dataDir, '..', 'escape'))).to.equal(false);
    });

    it('the database open in another process (no data directory lock involved): refused', async function () {
      this.timeout(STEP_TIMEOUT);
      const db = new BetterSqlite3(path.join(target.dataDir, 'keen.db'), { fileMustExist: true });
      try {
        db.pragma('journal_mode = WAL');
        db.prepare('select count(*) from users').get();
        await refused(backupFile, 'daemon', /keen\.db is open in another process/);
      } finally {
        db.close();
      }
    });
  });

  describe('Postgres is refused, pointing at the documentation', () => {
    it('backup and restore of a Postgres URL exit 1 with what to use instead', async function () {
      this.timeout(STEP_TIMEOUT);
      const dir = mkdtempSync(path.join(scratch, 'pg-'));
      mkdirSync(path.join(dir, 'data'));
      const config = path.join(dir, 'gateway.yaml');
      writeFileSync(
        config,
        stringify({
          env: 'test',
          data_dir: path.join(dir, 'data'),
          database: { url: 'postgres://keen:canary-pw-5521@127.0.0.1:1/keen' },
        }),
      );
      const b = await runAdmin(['backup', '--config', config, '--to', path.join(dir, 'x.tar')]);
      expect(b.code).to.equal(1);
      expect(b.stderr)
        .to.include('POSTGRES_UNSUPPORTED')
        .and.include('pg_dump')
        .and.include('docs/DEPLOY.md, "Backups"');
      expect(b.stderr).not.to.include('canary-pw-5521');
      expect(existsSync(path.join(dir, 'x.tar'))).to.equal(false);
      const j = await runAdmin(['backup', '--config', config, '--to', path.join(dir, 'x.tar'), '--json']);
      expect(JSON.parse(j.stderr).error.code).to.equal('POSTGRES_UNSUPPORTED');
      const r = await runGateway(['restore', backupFile, '--config', config]);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.include('pg_dump').and.include('docs/DEPLOY.md, "Backups"');
      expect(r.stderr).not.to.include('canary-pw-5521');
    });
  });
});
