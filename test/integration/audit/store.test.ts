import { expect } from 'chai';
import { sql } from 'kysely';
import { GENESIS_HASH, entryHash, rowToRecord, type AuditRecord } from '../../../daemon/audit/entry.js';
import { AuditQuery } from '../../../daemon/audit/query.js';
import { verifyChain } from '../../../daemon/audit/verify.js';
import { Metrics } from '../../../daemon/metrics.js';
import { EVERYTHING } from '../../../daemon/policies/index.js';
import { describeStorage } from '../../helpers/backends.js';
import { openTestDatabase, type TestDatabase } from '../../helpers/database.js';
import { AuditRepository } from '../../../daemon/storage/repos/audit.js';
import { CANARY } from '../../unit/audit/canaries.js';
import { appendMany, makeAuditLogger, rehashFrom, sampleEvent } from './support.js';

describeStorage('audit log store', (backend) => {
  let t: TestDatabase;
  beforeEach(async () => {
    t = await openTestDatabase(backend);
  });
  afterEach(async () => t?.close());

  const rows = () => t.database.db.selectFrom('audit_log').selectAll().orderBy('seq', 'asc').execute();

  it('appends entries in a hash chain and reads them back', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const { audit, clock } = makeAuditLogger(t.database, undefined, { metrics });
    const first = await audit.append(sampleEvent(1, { details: { reason: 'x', nested: { a: [1, 2] } } }));
    clock.advance(5);
    await audit.record(sampleEvent(2));
    expect(first.seq).to.equal(1);
    expect(first.id).to.match(/^aud_[0-9a-z]{26}$/);
    expect(first.prev_hash).to.equal(GENESIS_HASH);

    const stored = (await rows()).map(rowToRecord);
    expect(stored).to.have.length(2);
    expect(stored[0]).to.deep.equal(first);
    expect(stored[0]).to.deep.include({
      action: 'key.create',
      outcome: 'success',
      actor_type: 'user',
      tenant_id: 'ten_a',
      target_type: 'user',
      ip: '127.0.0.1',
      user_agent: 'mocha',
      request_id: 'req_1',
      details: { reason: 'x', nested: { a: [1, 2] } },
    });
    expect(stored[1]!.seq).to.equal(2);
    expect(stored[1]!.ts).to.equal(stored[0]!.ts + 5);
    expect(stored[1]!.prev_hash).to.equal(stored[0]!.hash);
    for (const e of stored) expect(entryHash(e)).to.equal(e.hash);
    expect(await audit.head()).to.deep.equal({ seq: 2, hash: stored[1]!.hash });
    expect(await verifyChain(t.database)).to.deep.include({
      ok: true,
      entries: 2,
      firstSeq: 1,
      lastSeq: 2,
      failure: null,
    });
    expect(await metrics.registry.getSingleMetricAsString('keen_audit_entries_total')).to.include(
      'outcome="success"} 2',
    );
  });

  it('verifies an empty log', async () => {
    expect(await verifyChain(t.database)).to.deep.include({ ok: true, entries: 0, lastHash: GENESIS_HASH });
  });

  describe('tampering', () => {
    beforeEach(async () => {
      const { audit } = makeAuditLogger(t.database);
      await appendMany(audit, 10);
      expect((await verifyChain(t.database, { pageSize: 3 })).ok).to.equal(true);
    });

    it('a changed entry fails verify, named with its seq and id (hash mismatch)', async () => {
      const row = (await rows())[4]!;
      await t.database.db.updateTable('audit_log').set({ details: '{"n":999}' }).where('seq', '=', 5).execute();
      const r = await verifyChain(t.database, { pageSize: 3 });
      expect(r.ok).to.equal(false);
      expect(r.failure).to.deep.include({ seq: 5, id: row.id, reason: 'hash mismatch' });
      expect(r.entries).to.equal(4);
    });

    it('a changed column other than details, or details that are not JSON, fail too', async () => {
      await t.database.db.updateTable('audit_log').set({ outcome: 'failure' }).where('seq', '=', 2).execute();
      expect((await verifyChain(t.database)).failure).to.deep.include({ seq: 2, reason: 'hash mismatch' });
      await t.database.db
        .updateTable('audit_log')
        .set({ outcome: 'success', details: 'not json' })
        .where('seq', '=', 2)
        .execute();
      expect((await verifyChain(t.database)).failure).to.deep.include({ seq: 2, reason: 'hash mismatch' });
    });

    it('a deleted entry fails verify as a gap in seq, naming the entry after it', async () => {
      const after = (await rows())[6]!;
      await t.database.db.deleteFrom('audit_log').where('seq', '=', 6).execute();
      const r = await verifyChain(t.database);
      expect(r.failure).to.deep.include({ seq: 7, id: after.id, reason: 'gap in seq' });
      expect(r.failure!.message).to.include('entry 6 is missing');
    });

    it('two swapped entries fail verify (order)', async () => {
      const all = await rows();
      const [a, b] = [all[3]!, all[4]!];
      const { seq: _sa, ...contentA } = a;
      const { seq: _sb, ...contentB } = b;
      // Move ids out of the way of the primary key first.
      await t.database.db.updateTable('audit_log').set({ id: 'aud_tmp' }).where('seq', '=', a.seq).execute();
      await t.database.db.updateTable('audit_log').set(contentA).where('seq', '=', b.seq).execute();
      await t.database.db.updateTable('audit_log').set(contentB).where('seq', '=', a.seq).execute();
      const r = await verifyChain(t.database);
      expect(r.failure).to.deep.include({ seq: 4, id: b.id, reason: 'order' });
      expect(r.failure!.message).to.include('written as seq 5');
    });

    it('a re-hashed change is caught at the next entry (prev_hash mismatch) when the rest is left alone', async () => {
      await t.database.db.updateTable('audit_log').set({ details: '{"n":999}' }).where('seq', '=', 5).execute();
      const row = rowToRecord((await rows())[4]!);
      await t.database.db
        .updateTable('audit_log')
        .set({ hash: entryHash(row) })
        .where('seq', '=', 5)
        .execute();
      const r = await verifyChain(t.database);
      expect(r.failure).to.deep.include({ seq: 6, reason: 'prev_hash mismatch' });
    });

    it('a truncated tail fails plain verify while the head still remembers it', async () => {
      await t.database.db.deleteFrom('audit_log').where('seq', '>', 8).execute();
      const r = await verifyChain(t.database);
      expect(r.failure).to.deep.include({ seq: 9, id: null, reason: 'truncated tail' });
    });

    it('a chain rewritten end to end passes plain verify (only checkpoints catch it)', async () => {
      await t.database.db.updateTable('audit_log').set({ details: '{"n":999}' }).where('seq', '=', 3).execute();
      await rehashFrom(t.database, 3);
      expect((await verifyChain(t.database)).ok).to.equal(true);
    });
  });

  it('never stores a credential, whatever key or value it hides under', async () => {
    const { audit } = makeAuditLogger(t.database);
    const secretKeys = [
      'password',
      'newPassword',
      'new_password',
      'secret',
      'totp_secret',
      'token',
      'refresh_token',
      'refreshToken',
      'apiKey',
      'api_key',
      'authorization',
      'cookie',
      'otp',
      'mfa_token',
      'recovery_codes',
      'ticket',
      'private_key',
    ];
    for (const [i, canary] of Object.values(CANARY).entries()) {
      const details: Record<string, unknown> = {};
      for (const k of secretKeys) details[k] = canary;
      details.nested = { list: [{ password: canary }, { deep: { client_secret: canary } }] };
      await audit.record(sampleEvent(i, { details }));
    }
    // And as values under harmless names, and in the top-level free-text fields.
    await audit.record(
      sampleEvent(10, {
        userAgent: `Bearer ${CANARY.jwt}`,
        target: { type: 'api_key', id: CANARY.apiKey },
        actor: { type: 'anonymous', id: CANARY.refreshToken },
        details: {
          note: CANARY.apiKey,
          header: `ApiKey ${CANARY.apiKey}`,
          raw: CANARY.jwt,
          embedded: `see ${CANARY.refreshToken} here`,
          url: `otpauth://totp/keen:bob?secret=${CANARY.totpSecret}`,
          base32: CANARY.totpSecret,
          arr: [CANARY.jwt, { x: `Bearer ${CANARY.refreshToken}` }],
        },
      }),
    );
    const dump = JSON.stringify(await sql`select * from audit_log`.execute(t.database.db));
    expect(dump).to.include('[REDACTED]');
    for (const [name, canary] of Object.entries(CANARY)) {
      expect(dump.includes(canary), `${name} leaked`).to.equal(false);
    }
    // Not even the random body of the key or the signature of the JWT.
    expect(dump).not.to.include(CANARY.apiKey.slice('ak_live_'.length));
    expect(dump).not.to.include(CANARY.jwt.split('.')[2]!);
    expect((await verifyChain(t.database)).ok).to.equal(true);
  });

  it('stores a username with a newline and JSON in it escaped, and returns it unchanged', async () => {
    const { audit } = makeAuditLogger(t.database);
    const evil = 'mallory\n{"action":"auth.login","outcome":"success"}\r\n\u2028"';
    await audit.record({
      action: 'auth.login_failed',
      outcome: 'failure',
      actor: { type: 'anonymous', id: evil },
      tenantId: null,
      details: { email: evil, reason: 'unknown_user' },
    });
    const raw = (await rows())[0]!;
    expect(raw.details).not.to.include('\n');
    expect(raw.details).to.include('\\n{\\"action\\"');
    const page = await new AuditQuery({ audits: new AuditRepository(t.database) }).list(EVERYTHING);
    expect(page.entries[0]!.actor_id).to.equal(evil);
    expect(page.entries[0]!.details).to.deep.equal({ email: evil, reason: 'unknown_user' });
    const lines: string[] = [];
    for await (const line of new AuditQuery({ audits: new AuditRepository(t.database) }).exportJsonLines(EVERYTHING))
      lines.push(line);
    expect(lines).to.have.length(1);
    expect(lines[0]!.split('\n')).to.have.length(2); // one line, one trailing newline
    expect((JSON.parse(lines[0]!) as AuditRecord).details.email).to.equal(evil);
    expect((await verifyChain(t.database)).ok).to.equal(true);
  });

  it("commits the entry with the caller's transaction and rolls it back with it", async () => {
    const { audit } = makeAuditLogger(t.database);
    await audit.record(sampleEvent(1));
    const failed = await t.database
      .transaction(async (trx) => {
        await trx.insertInto('gateway_meta').values({ key: 'action-rolled-back', value: '1' }).execute();
        await audit.record(sampleEvent(2, { action: 'credits.grant' }), trx);
        throw new Error('the action failed');
      })
      .catch((e: Error) => e);
    expect((failed as Error).message).to.equal('the action failed');
    expect((await rows()).map((r) => r.action)).to.deep.equal(['key.create']);
    expect(await audit.head()).to.deep.include({ seq: 1 });

    await t.database.transaction(async (trx) => {
      await trx.insertInto('gateway_meta').values({ key: 'action-committed', value: '1' }).execute();
      await audit.record(sampleEvent(3, { action: 'credits.grant' }), trx);
    });
    const all = await rows();
    expect(all.map((r) => [Number(r.seq), r.action])).to.deep.equal([
      [1, 'key.create'],
      [2, 'credits.grant'],
    ]);
    expect((await verifyChain(t.database)).ok).to.equal(true);
  });

  it('aggregates denials per action, actor and minute, with a count', async () => {
    const { audit, clock } = makeAuditLogger(t.database);
    clock.set(Date.UTC(2026, 0, 1, 12, 0, 5));
    const denial = (actor: string) => ({
      action: 'ratelimit.denied' as const,
      outcome: 'denied' as const,
      actor: { type: 'api_key' as const, id: actor },
      tenantId: 'ten_a',
      details: { limit: 1000, window: 'hour' },
    });
    for (let i = 0; i < 500; i++) audit.recordDenialAggregated(denial('key_a'));
    for (let i = 0; i < 3; i++) audit.recordDenialAggregated(denial('key_b'));
    expect(await rows()).to.have.length(0); // nothing written yet: one entry per key and minute
    clock.advance(60_000);
    audit.recordDenialAggregated(denial('key_a')); // a new minute: the last minute's bucket is written
    await audit.flush();
    const entries = (await rows()).map(rowToRecord);
    expect(entries.map((e) => [e.actor_id, e.details.count])).to.deep.equal([
      ['key_a', 500],
      ['key_b', 3],
      ['key_a', 1],
    ]);
    expect(entries[0]!.details).to.deep.include({
      limit: 1000,
      window: 'hour',
      window_start: '2026-01-01T12:00:00.000Z',
    });
    expect(entries.every((e) => e.outcome === 'denied' && e.action === 'ratelimit.denied')).to.equal(true);
    await audit.close();
  });

  it('pools denials beyond the key bound into one overflow entry', async () => {
    const { audit } = makeAuditLogger(t.database, undefined, { maxDenialKeys: 5 });
    for (let i = 0; i < 100; i++) {
      audit.recordDenialAggregated({
        action: 'concurrency.denied',
        outcome: 'denied',
        actor: { type: 'user', id: `usr_${i}` },
        tenantId: null,
      });
    }
    await audit.flush();
    const entries = (await rows()).map(rowToRecord);
    expect(entries).to.have.length(6);
    const overflow = entries.find((e) => e.details.overflow === true)!;
    expect(overflow.details.count).to.equal(95);
  });

  it('feeds subscribers each committed entry in order, never a rolled-back one, within their scope', async () => {
    const { audit } = makeAuditLogger(t.database, undefined, { tailPollMs: 20 });
    await audit.record(sampleEvent(0)); // before subscribing: not delivered
    const all: AuditRecord[] = [];
    const tenantB: AuditRecord[] = [];
    const head = await audit.head();
    const stopAll = audit.subscribe((e) => all.push(e), { reach: EVERYTHING, afterSeq: head.seq });
    const stopB = audit.subscribe((e) => tenantB.push(e), { reach: { tenantId: 'ten_b' }, afterSeq: head.seq });
    await audit.record(sampleEvent(1));
    await audit.record(sampleEvent(2, { tenantId: 'ten_b' }));
    await t.database
      .transaction(async (trx) => {
        await audit.record(sampleEvent(3, { action: 'credits.grant' }), trx);
        throw new Error('rollback');
      })
      .catch(() => undefined);
    await t.database.transaction(async (trx) => {
      await audit.record(sampleEvent(4, { action: 'credits.settle', tenantId: 'ten_b' }), trx);
    });
    const deadline = Date.now() + 5000;
    while (all.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    stopAll();
    stopB();
    expect(all.map((e) => e.seq)).to.deep.equal([2, 3, 4]);
    expect(all.map((e) => e.action)).to.deep.equal(['key.create', 'auth.login', 'credits.settle']);
    expect(tenantB.map((e) => e.seq)).to.deep.equal([3, 4]);
    await audit.close();
  });
});
