import { expect } from 'chai';
import { sql } from 'kysely';
import { describeStorage } from '../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { runAdmin } from '../helpers/cli.js';
import { buildApiKey, buildUser, type TestUser } from '../helpers/factories.js';

const admin = (args: string[], env: Record<string, string> = {}) => runAdmin(args, { env });

/** Each CLI run is a fresh Node process: allow for a busy machine. */
const SPAWN_TIMEOUT = 120_000;

describeStorage('keen-admin credits against a real daemon', (backend) => {
  let d: TestDaemon;
  let env: Record<string, string>;
  let u: TestUser;

  const ledgerRows = (userId: string) =>
    d.container.database.db.selectFrom('credit_ledger').selectAll().where('user_id', '=', userId).execute();

  before(async () => {
    d = await startDaemon({ backend });
    const root = await buildUser(d, { role: 'admin', tier: 'enterprise' });
    env = { KEEN_URL: d.url, KEEN_API_KEY: (await buildApiKey(d, root, { name: 'ops' })).key };
    u = await buildUser(d);
  });
  after(async () => d?.stop());

  it('grant prints the entry and the new balance (--json parsed, table for people)', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const j = await admin(
      ['credits', 'grant', '--user', u.email, '--amount', '12.5', '--reason', 'welcome', '--json'],
      env,
    );
    expect(j.code, j.stderr).to.equal(0);
    expect(j.json.transaction).to.include({ kind: 'grant', amount: 12.5, balance_after: 12.5, reason: 'welcome' });
    expect(j.json.balance).to.deep.equal({ balance: 12.5, reserved: 0, available: 12.5 });
    const t = await admin(['credits', 'grant', '--user', u.user.id, '--amount', '0.000001'], env);
    expect(t.code, t.stderr).to.equal(0);
    expect(t.stdout).to.match(/^TRANSACTION\s+USER\s+AMOUNT\s+BALANCE\s+RESERVED\s+AVAILABLE\n/);
    expect(t.stdout).to.match(/txn_\S+\s+usr_\S+\s+0\.000001\s+12\.500001\s+0\s+12\.500001/);
    const rows = await ledgerRows(u.user.id);
    expect(rows.map((r) => r.reason)).to.have.members(['welcome', 'granted with keen-admin']);
  });

  it('grant with --idempotency-key lands once; the key with another amount is refused', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const v = await buildUser(d);
    const args = ['credits', 'grant', '--user', v.email, '--amount', '3', '--idempotency-key', 'cli-grant-1', '--json'];
    const first = await admin(args, env);
    const again = await admin(args, env);
    expect(first.code, first.stderr).to.equal(0);
    expect(again.code, again.stderr).to.equal(0);
    expect(again.json).to.deep.equal(first.json);
    expect(await ledgerRows(v.user.id)).to.have.length(1);
    const other = await admin(
      ['credits', 'grant', '--user', v.email, '--amount', '4', '--idempotency-key', 'cli-grant-1'],
      env,
    );
    expect(other.code).to.equal(1);
    expect(other.stderr).to.include('IDEMPOTENCY_KEY_REUSED');
    expect(await ledgerRows(v.user.id)).to.have.length(1);
  });

  it('exits 2 on a malformed amount or key, before any request; 1 for an unknown user', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const amounts = ['abc', '0', '-5', '1.1234567', '1e308', ''];
    const runs = await Promise.all(
      amounts.map((amount) => admin(['credits', 'grant', '--user', u.email, '--amount', amount], env)),
    );
    for (const [i, r] of runs.entries()) {
      const amount = amounts[i]!;
      expect(r.code, `${amount}: ${r.stderr}`).to.equal(2);
      expect(r.stderr, amount).to.include('--amount');
      expect(r.stdout).to.equal('');
    }
    expect(
      (await admin(['credits', 'grant', '--user', u.email, '--amount', '1', '--idempotency-key', 'é'], env)).code,
    ).to.equal(2);
    expect((await admin(['credits', 'grant', '--user', u.email], env)).code).to.equal(2);
    expect((await admin(['credits', 'history', '--user', u.email, '--limit', '0'], env)).code).to.equal(2);
    expect(await ledgerRows(u.user.id)).to.have.length(2);
    const missing = await admin(['credits', 'grant', '--user', 'nobody@example.test', '--amount', '1'], env);
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.include('NOT_FOUND');
  });

  it('balance and history, as JSON and as tables', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const b = await admin(['credits', 'balance', '--user', u.email, '--json'], env);
    expect(b.code, b.stderr).to.equal(0);
    expect(b.json).to.deep.equal({
      success: true,
      user_id: u.user.id,
      balance: 12.500001,
      reserved: 0,
      available: 12.500001,
    });
    const bt = await admin(['credits', 'balance', '--user', u.email], env);
    expect(bt.stdout).to.match(/^USER\s+BALANCE\s+RESERVED\s+AVAILABLE\nusr_\S+\s+12\.500001\s+0\s+12\.500001\n$/);
    const h = await admin(['credits', 'history', '--user', u.email, '--limit', '1', '--json'], env);
    expect(h.code, h.stderr).to.equal(0);
    expect(h.json.transactions).to.have.length(1);
    expect(h.json.transactions[0]).to.include({ amount: 0.000001 });
    expect(h.json.next_cursor).to.be.a('string');
    const older = await admin(['credits', 'history', '--user', u.email, '--cursor', h.json.next_cursor, '--json'], env);
    expect(older.json.transactions.map((e: { amount: number }) => e.amount)).to.deep.equal([12.5]);
    const ht = await admin(['credits', 'history', '--user', u.email, '--limit', '1'], env);
    expect(ht.stdout).to.match(/^ID\s+CREATED_AT\s+KIND\s+AMOUNT/);
    expect(ht.stdout).to.include('grant');
    expect(ht.stderr).to.include('more: --cursor ');
  });

  it('verify: "ledger consistent" and exit 0; after tampering exit 1 naming each mismatch on stderr', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const ok = await admin(['credits', 'verify'], env);
    expect(ok.code, ok.stderr).to.equal(0);
    expect(ok.stdout).to.equal('ledger consistent\n');
    const okJson = await admin(['credits', 'verify', '--json'], env);
    expect(okJson.json).to.deep.equal({ success: true, ok: true, mismatches: [] });

    await sql`UPDATE credit_accounts SET balance = balance + 1000000 WHERE user_id = ${u.user.id}`.execute(
      d.container.database.db,
    );
    try {
      const bad = await admin(['credits', 'verify'], env);
      expect(bad.code).to.equal(1);
      expect(bad.stdout).to.equal('');
      expect(bad.stderr).to.include(`mismatch: user ${u.user.id} balance: expected 12.500001, stored 13.500001`);
      expect(bad.stderr).to.include('LEDGER_MISMATCH');
      const badJson = await admin(['credits', 'verify', '--json'], env);
      expect(badJson.code).to.equal(1);
      expect(badJson.json.ok).to.equal(false);
      expect(badJson.json.mismatches.map((m: { check: string }) => m.check)).to.include('balance');
    } finally {
      await sql`UPDATE credit_accounts SET balance = balance - 1000000 WHERE user_id = ${u.user.id}`.execute(
        d.container.database.db,
      );
    }
    expect((await admin(['credits', 'verify'], env)).code).to.equal(0);
  });

  it('prints help with an example on every credits command', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const subs = [[], ['grant'], ['balance'], ['history'], ['verify']];
    const runs = await Promise.all(subs.map((sub) => admin(['credits', ...sub, '--help'])));
    for (const [i, r] of runs.entries()) {
      const sub = subs[i]!;
      expect(r.code, sub.join(' ')).to.equal(0);
      expect(r.stdout, sub.join(' ')).to.include('Usage:').and.include('Example:');
    }
  });
});
