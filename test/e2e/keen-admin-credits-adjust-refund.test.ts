import { expect } from 'chai';
import { describeStorage } from '../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { runAdmin } from '../helpers/cli.js';
import { buildApiKey, buildTenant, buildUser } from '../helpers/factories.js';
import { execute, expectLedgerClean, grant, waitForEnd } from '../helpers/sessions.js';

const admin = (args: string[], env: Record<string, string>) => runAdmin(args, { env });

/** Each CLI run is a fresh Node process: allow for a busy machine. */
const SPAWN_TIMEOUT = 120_000;

describeStorage('keen-admin credits adjust and refund against a real daemon', (backend) => {
  let d: TestDaemon;
  let env: Record<string, string>;

  const ledgerRows = (userId: string) =>
    d.container.database.db
      .selectFrom('credit_ledger')
      .selectAll()
      .where('user_id', '=', userId)
      .orderBy('seq')
      .execute();

  before(async () => {
    d = await startDaemon({ backend, config: { credits: { reservation_ttl_seconds: 30 } } });
    const root = await buildUser(d, { role: 'admin', tier: 'enterprise' });
    env = { KEEN_URL: d.url, KEEN_API_KEY: (await buildApiKey(d, root, { name: 'ops' })).key };
  });
  after(async () => d?.stop());

  it('adjust takes a negative --amount, prints the entry and balance; --idempotency-key lands once; another amount with it is refused', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const u = await buildUser(d);
    await grant(d, u, 10);
    const args = [
      'credits',
      'adjust',
      '--user',
      u.email,
      '--amount',
      '-1.5',
      '--reason',
      'double-billed run',
      '--idempotency-key',
      'cli-adj-1',
      '--json',
    ];
    const first = await admin(args, env);
    expect(first.code, first.stderr).to.equal(0);
    expect(first.json.transaction).to.include({
      kind: 'adjustment',
      amount: -1.5,
      balance_after: 8.5,
      reason: 'double-billed run',
    });
    expect(first.json.balance).to.deep.equal({ balance: 8.5, reserved: 0, available: 8.5 });
    const again = await admin(args, env);
    expect(again.code, again.stderr).to.equal(0);
    expect(again.json).to.deep.equal(first.json);
    const other = await admin(
      [
        'credits',
        'adjust',
        '--user',
        u.email,
        '--amount',
        '-2',
        '--reason',
        'double-billed run',
        '--idempotency-key',
        'cli-adj-1',
      ],
      env,
    );
    expect(other.code).to.equal(1);
    expect(other.stderr).to.include('IDEMPOTENCY_KEY_REUSED');

    const table = await admin(
      ['credits', 'adjust', '--user', u.user.id, '--amount', '0.25', '--reason', 'goodwill'],
      env,
    );
    expect(table.code, table.stderr).to.equal(0);
    expect(table.stdout).to.match(/^TRANSACTION\s+USER\s+AMOUNT\s+BALANCE\s+RESERVED\s+AVAILABLE\n/);
    expect(table.stdout).to.match(/txn_\S+\s+usr_\S+\s+0\.25\s+8\.75\s+0\s+8\.75/);
    expect((await ledgerRows(u.user.id)).filter((r) => r.kind === 'adjustment')).to.have.length(2);
  });

  it('adjust exits 2 on 0, a malformed amount or no --reason, before any request; 1 with 402 below what is available', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const u = await buildUser(d);
    await grant(d, u, 1);
    for (const amount of ['0', '-0', 'abc', '-1.1234567', '--5']) {
      const r = await admin(['credits', 'adjust', '--user', u.email, '--amount', amount, '--reason', 'x'], env);
      expect(r.code, `${amount}: ${r.stderr}`).to.equal(2);
    }
    const noReason = await admin(['credits', 'adjust', '--user', u.email, '--amount', '1'], env);
    expect(noReason.code, noReason.stderr).to.equal(2);
    const short = await admin(['credits', 'adjust', '--user', u.email, '--amount', '-2', '--reason', 'too much'], env);
    expect(short.code).to.equal(1);
    expect(short.stderr).to.include('INSUFFICIENT_CREDITS');
    expect((await ledgerRows(u.user.id)).map((r) => r.kind)).to.deep.equal(['grant']);
  });

  it('refund gives back part, then the rest by default; a further refund exits 1 with REFUND_EXCEEDS_CHARGE', async function () {
    this.timeout(SPAWN_TIMEOUT);
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 10);
    const r = await execute(d, u, 'Spend a great deal of tokens [overspend]', { costBudget: 2 });
    expect(r.status, r.text).to.equal(200);
    const end = await waitForEnd(d, u, r.body.session.id);
    expect(end.final_cost).to.equal(2);

    const part = await admin(
      ['credits', 'refund', end.id, '--amount', '0.5', '--reason', 'partial outage', '--json'],
      env,
    );
    expect(part.code, part.stderr).to.equal(0);
    expect(part.json).to.include({
      session_id: end.id,
      user_id: u.user.id,
      charged: 2,
      refunded: 0.5,
      refundable: 1.5,
    });
    expect(part.json.transaction).to.include({
      kind: 'refund',
      amount: 0.5,
      session_id: end.id,
      reason: 'partial outage',
    });

    const rest = await admin(['credits', 'refund', end.id, '--reason', 'the rest'], env);
    expect(rest.code, rest.stderr).to.equal(0);
    expect(rest.stdout).to.match(
      /^TRANSACTION\s+SESSION\s+USER\s+AMOUNT\s+CHARGED\s+REFUNDED\s+REFUNDABLE\s+BALANCE\n/,
    );
    expect(rest.stdout).to.match(/txn_\S+\s+ses_\S+\s+usr_\S+\s+1\.5\s+2\s+2\s+0\s+10/);

    const more = await admin(['credits', 'refund', end.id, '--reason', 'again'], env);
    expect(more.code).to.equal(1);
    expect(more.stderr).to.include('REFUND_EXCEEDS_CHARGE');
    const bad = await admin(['credits', 'refund', end.id, '--amount', '-1', '--reason', 'negative'], env);
    expect(bad.code, bad.stderr).to.equal(2);
    expect((await ledgerRows(u.user.id)).filter((x) => x.kind === 'refund').map((x) => Number(x.amount))).to.deep.equal(
      [500_000, 1_500_000],
    );
    await expectLedgerClean(d);
  });

  it("a tenant admin's key is refused (exit 1, FORBIDDEN) for adjust and refund", async function () {
    this.timeout(SPAWN_TIMEOUT);
    const tenant = await buildTenant(d);
    const tadmin = await buildUser(d, { role: 'admin', tenantId: tenant });
    const member = await buildUser(d, { tenantId: tenant });
    const tenv = { KEEN_URL: d.url, KEEN_API_KEY: (await buildApiKey(d, tadmin, { name: 'tenant ops' })).key };
    const a = await admin(['credits', 'adjust', '--user', member.email, '--amount', '1', '--reason', 'mint'], tenv);
    expect(a.code).to.equal(1);
    expect(a.stderr).to.include('FORBIDDEN');
    const f = await admin(['credits', 'refund', 'ses_00000000000000000000000000', '--reason', 'x'], tenv);
    expect(f.code).to.equal(1);
    expect(f.stderr).to.include('FORBIDDEN');
  });
});
