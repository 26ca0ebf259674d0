import { expect } from 'chai';
import type { AuditRecord } from '../../../daemon/audit/entry.js';
import { AuditQuery, AuditQueryError, MAX_PAGE_SIZE, type AuditFilters } from '../../../daemon/audit/query.js';
import { EVERYTHING, type Reach } from '../../../daemon/policies/index.js';
import { verifyEntries } from '../../../daemon/audit/verify.js';
import { describeStorage } from '../../helpers/backends.js';
import { AuditRepository } from '../../../daemon/storage/repos/audit.js';
import { openTestDatabase, type TestDatabase } from '../../helpers/database.js';
import { makeAuditLogger } from './support.js';

const T0 = Date.UTC(2026, 0, 1);
const MIN = 60_000;

describeStorage('audit log queries', (backend) => {
  let t: TestDatabase;
  let q: AuditQuery;
  before(async () => {
    t = await openTestDatabase(backend);
    q = new AuditQuery({ audits: new AuditRepository(t.database) });
    const { audit, clock } = makeAuditLogger(t.database);
    clock.set(T0);
    // 30 entries, one a minute: tenants a, b and none; alice acts in a, bob in b, the admin acts on alice.
    for (let i = 0; i < 30; i++) {
      const kind = i % 3;
      await audit.record({
        action: (['auth.login', 'key.create', 'auth.login_failed'] as const)[kind]!,
        outcome: kind === 2 ? 'failure' : 'success',
        actor:
          kind === 2 ? { type: 'anonymous', id: null } : { type: 'user', id: i % 2 === 0 ? 'usr_alice' : 'usr_bob' },
        tenantId: kind === 2 ? null : i % 2 === 0 ? 'ten_a' : 'ten_b',
        target: kind === 1 ? { type: 'api_key', id: `key_${i}` } : { type: 'user', id: 'usr_alice' },
        details: { i },
      });
      clock.advance(MIN);
    }
    await audit.record({
      action: 'user.suspend',
      outcome: 'success',
      actor: { type: 'admin', id: 'usr_admin' },
      tenantId: 'ten_a',
      target: { type: 'user', id: 'usr_alice' },
    });
  });
  after(async () => t?.close());

  async function all(
    scope: Reach,
    filters: AuditFilters = {},
    order: 'asc' | 'desc' = 'desc',
    limit = 4,
  ): Promise<AuditRecord[]> {
    const out: AuditRecord[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 100; pages++) {
      const page = await q.list(scope, filters, { cursor, limit, order });
      out.push(...page.entries);
      if (!page.nextCursor) return out;
      cursor = page.nextCursor;
    }
    throw new Error('too many pages');
  }

  it('pages through everything newest first and oldest first, without repeats', async () => {
    const desc = await all(EVERYTHING);
    expect(desc.map((e) => e.seq)).to.deep.equal(Array.from({ length: 31 }, (_, i) => 31 - i));
    const asc = await all(EVERYTHING, {}, 'asc', 7);
    expect(asc.map((e) => e.seq)).to.deep.equal(Array.from({ length: 31 }, (_, i) => i + 1));
    const first = await q.list(EVERYTHING, {}, { limit: 5 });
    expect(first.entries.map((e) => e.seq)).to.deep.equal([31, 30, 29, 28, 27]);
    expect(first.nextCursor).to.equal('27');
    const last = await q.list(EVERYTHING, {}, { limit: 5, cursor: '3' });
    expect(last.entries.map((e) => e.seq)).to.deep.equal([2, 1]);
    expect(last.nextCursor).to.equal(null);
  });

  it("scopes every read to the tenant in the query: another tenant's entries never come back", async () => {
    const a = await all({ tenantId: 'ten_a' });
    expect(a).to.have.length(11);
    expect(a.every((e) => e.tenant_id === 'ten_a')).to.equal(true);
    // A filter cannot widen the scope.
    expect(await all({ tenantId: 'ten_a' }, { tenantId: 'ten_b' })).to.deep.equal([]);
    expect(await all({ tenantId: 'ten_a' }, { actorId: 'usr_bob' })).to.deep.equal([]);
    expect(await q.listAfter({ tenantId: 'ten_b' }, 0)).to.satisfy(
      (es: AuditRecord[]) => es.length === 10 && es.every((e) => e.tenant_id === 'ten_b'),
    );
    const lines: string[] = [];
    for await (const l of q.exportJsonLines({ tenantId: 'ten_b' }, {}, { pageSize: 3 })) lines.push(l);
    expect(lines.map((l) => (JSON.parse(l) as AuditRecord).tenant_id)).to.deep.equal(Array(10).fill('ten_b'));
    // The platform scope may narrow to one tenant.
    expect((await all(EVERYTHING, { tenantId: 'ten_b' })).length).to.equal(10);
  });

  it('filters by action, action prefix, actor, user (actor or target), outcome and time', async () => {
    expect((await all(EVERYTHING, { action: 'auth.login' })).every((e) => e.action === 'auth.login')).to.equal(true);
    expect(await all(EVERYTHING, { action: 'auth.login' })).to.have.length(10);
    expect(await all(EVERYTHING, { action: 'auth' })).to.have.length(20);
    expect(await all(EVERYTHING, { action: 'auth.*' })).to.have.length(20);
    expect(await all(EVERYTHING, { action: 'user' })).to.have.length(1);
    expect(await all(EVERYTHING, { action: 'au' })).to.have.length(0);
    expect(await all(EVERYTHING, { actorId: 'usr_admin' })).to.have.length(1);
    const alice = await all(EVERYTHING, { userId: 'usr_alice' });
    // Alice's own actions, plus every entry targeting her (including anonymous failures and the admin's suspension).
    expect(
      alice.every((e) => e.actor_id === 'usr_alice' || (e.target_type === 'user' && e.target_id === 'usr_alice')),
    ).to.equal(true);
    expect(alice.some((e) => e.actor_id === 'usr_admin')).to.equal(true);
    expect(alice.some((e) => e.actor_id === 'usr_bob')).to.equal(true); // bob's logins target alice in this fixture
    expect(await all(EVERYTHING, { outcome: 'failure' })).to.have.length(10);
    const window = await all(EVERYTHING, { since: T0 + 10 * MIN, until: T0 + 20 * MIN });
    expect(window.map((e) => e.seq)).to.deep.equal(Array.from({ length: 10 }, (_, i) => 20 - i));
  });

  it('bounds the page size and refuses a malformed cursor', async () => {
    expect((await q.list(EVERYTHING, {}, { limit: 100_000 })).entries).to.have.length(31);
    expect(MAX_PAGE_SIZE).to.equal(500);
    expect((await q.list(EVERYTHING, {}, { limit: 0 })).entries).to.have.length(1);
    for (const cursor of ['abc', '-1', '1; drop table audit_log', '9'.repeat(30)]) {
      const err = await q.list(EVERYTHING, {}, { cursor }).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(AuditQueryError);
    }
    // A malformed reach is refused, never read as "everything".
    for (const reach of [null, '', { tenantId: '' }, { tenantId: null }, {}, { all: false }]) {
      const bad = await q.list(reach as never, {}).catch((e: unknown) => e);
      expect(bad, JSON.stringify(reach)).to.be.instanceOf(Error);
    }
  });

  it('exports a time range as JSON Lines in pages, which verify on their own', async () => {
    const lines: string[] = [];
    for await (const line of q.exportJsonLines(EVERYTHING, { since: T0 + 5 * MIN }, { pageSize: 4 })) lines.push(line);
    expect(lines).to.have.length(26);
    expect(lines.every((l) => l.endsWith('\n') && l.indexOf('\n') === l.length - 1)).to.equal(true);
    const records = lines.map((l) => JSON.parse(l) as AuditRecord);
    expect(records[0]!.seq).to.equal(6);
    expect(await verifyEntries(records)).to.deep.equal({ ok: true, entries: 26, failure: null });
    records[3]!.details = { i: 'forged' };
    expect((await verifyEntries(records)).failure).to.deep.include({ seq: 9, reason: 'hash mismatch' });
  });
});
