import { expect } from 'chai';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { AuditRecord } from '../../daemon/audit/entry.js';
import { PROJECT_ROOT } from '../../daemon/paths.js';
import { describeStorage } from '../helpers/backends.js';
import { ADMIN, NODE_ARGS, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { buildApiKey, buildUser, uniqueEmail } from '../helpers/factories.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function keenAdmin(args: string[], env: Record<string, string>): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, [...NODE_ARGS, ADMIN, ...args], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

function run(args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = keenAdmin(args, env);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += String(c)));
    child.stderr.on('data', (c) => (stderr += String(c)));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end();
  });
}

describeStorage('keen-admin audit against a real daemon', (backend) => {
  // Every step spawns CLI processes: slow on a loaded machine.
  beforeEach(function () {
    this.currentTest?.timeout(90_000);
  });
  let d: TestDaemon;
  let env: Record<string, string>;

  before(async () => {
    d = await startDaemon({ backend });
    const admin = await buildUser(d, { role: 'admin', tier: 'enterprise' });
    env = { KEEN_URL: d.url, KEEN_API_KEY: (await buildApiKey(d, admin)).key };
  });
  after(async () => d?.stop());

  it('tail --follow --json prints the latest entries, then an entry written after it started', async () => {
    const child = keenAdmin(['audit', 'tail', '--follow', '--json', '--limit', '3'], env);
    const lines: string[] = [];
    let buf = '';
    let stderr = '';
    let notify: (() => void) | null = null;
    child.stdout.on('data', (c) => {
      buf += String(c);
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
      notify?.();
    });
    child.stderr.on('data', (c) => (stderr += String(c)));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const waitFor = async (pred: () => boolean, what: string) => {
      const deadline = Date.now() + 30_000;
      while (!pred()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; stderr: ${stderr}`);
        await new Promise<void>((r) => {
          notify = r;
          setTimeout(r, 200);
        });
      }
    };
    try {
      // The daemon holds at least the admin's user.create and key.create.
      await waitFor(() => lines.length >= 2, 'the first entries');
      // The stream opens right after the first entries are printed: give it a moment to subscribe.
      await new Promise((r) => setTimeout(r, 500));
      const email = uniqueEmail('tailed');
      const created = await d.api.post('/v1/admin/users', { email }, { apiKey: env.KEEN_API_KEY });
      expect(created.status, created.text).to.equal(201);
      await waitFor(() => lines.some((l) => l.includes(created.body.user.id)), 'the new entry');
      const entries = lines.map((l) => JSON.parse(l) as AuditRecord);
      const entry = entries.find((e) => e.target_id === created.body.user.id)!;
      expect(entry).to.include({ action: 'user.create', outcome: 'success', actor_type: 'admin' });
      const seqs = entries.map((e) => e.seq);
      expect(seqs).to.deep.equal([...seqs].sort((a, b) => a - b));
      expect(new Set(seqs).size).to.equal(seqs.length);
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).to.equal(0);
  });

  it('tail prints one escaped line per entry for people, and filters by --action (and its deprecated name --type) and --user', async () => {
    const u = await buildUser(d);
    await d.container.auditStore.record({
      action: 'auth.login_failed',
      outcome: 'failure',
      actor: { type: 'user', id: u.user.id },
      tenantId: null,
      target: { type: 'user', id: u.user.id },
      details: { reason: 'wrong_password', email: 'a@example.test\n2026-01-01 #1 success auth.login {"x":1}' },
    });
    const r = await run(['audit', 'tail', '--action', 'auth.*', '--user', u.email], env);
    expect(r.code, r.stderr).to.equal(0);
    const out = r.stdout.trimEnd().split('\n');
    expect(out).to.have.length(1);
    expect(out[0]).to.include('auth.login_failed').and.include(`user:${u.user.id}`).and.include('\\n2026-01-01');
    expect(r.stderr).to.equal('');
    const none = await run(['audit', 'tail', '--type', 'nothing.here'], env);
    expect(none.stdout).to.equal('(no entries)\n');
    expect(none.stderr).to.include('--type is deprecated; use --action');
    expect((await run(['audit', 'tail', '--type', 'a.b', '--action', 'a.b'], env)).code).to.equal(2);
    const help = await run(['audit', 'tail', '--help'], env);
    expect(help.stdout).to.include('Example').and.include('--action <action>').and.not.include('--type');
  });

  it('export --since prints JSON Lines that parse', async () => {
    const r = await run(['audit', 'export', '--since', '1h'], env);
    expect(r.code, r.stderr).to.equal(0);
    const rows = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as AuditRecord);
    expect(rows.length).to.be.greaterThan(2);
    expect(rows.every((e) => typeof e.seq === 'number' && typeof e.hash === 'string')).to.equal(true);
    const keys = await run(['audit', 'export', '--since', '1h', '--action', 'key.*'], env);
    expect(keys.code, keys.stderr).to.equal(0);
    const keyRows = keys.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as AuditRecord);
    expect(keyRows.length).to.be.greaterThan(0);
    expect(keyRows.every((e) => e.action.startsWith('key.'))).to.equal(true);
    expect((await run(['audit', 'export'], env)).code).to.equal(2);
  });

  it('verify exits 0 on an intact chain and 1 naming the entry changed in the database', async () => {
    const ok = await run(['audit', 'verify'], env);
    expect(ok.code, ok.stderr).to.equal(0);
    expect(ok.stdout).to.match(/^chain intact: \d+ entries/);
    const victim = await d.container.database.db
      .selectFrom('audit_log')
      .select(['seq', 'id'])
      .orderBy('seq', 'asc')
      .offset(1)
      .limit(1)
      .executeTakeFirstOrThrow();
    await d.container.database.db
      .updateTable('audit_log')
      .set({ outcome: 'denied' })
      .where('seq', '=', victim.seq)
      .execute();
    const bad = await run(['audit', 'verify'], env);
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.include(`seq ${victim.seq}`).and.include(victim.id).and.include('hash mismatch');
    const json = await run(['audit', 'verify', '--json'], env);
    expect(json.code).to.equal(1);
    expect(JSON.parse(json.stdout.split('\n')[0]!).first_bad).to.include({ seq: Number(victim.seq), id: victim.id });
  });
});
