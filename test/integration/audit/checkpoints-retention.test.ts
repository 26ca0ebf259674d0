import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { expect } from 'chai';
import { AuditCheckpointer, SIGNING_KEY_FILE, keyId, type Checkpoint } from '../../../daemon/audit/checkpoints.js';
import type { AuditRecord } from '../../../daemon/audit/entry.js';
import { AuditRetention, archiveFileName } from '../../../daemon/audit/retention.js';
import { verifyChain } from '../../../daemon/audit/verify.js';
import { ManualClock } from '../../../daemon/clock.js';
import { describeStorage } from '../../helpers/backends.js';
import { AuditRepository } from '../../../daemon/storage/repos/audit.js';
import { openTestDatabase, type TestDatabase } from '../../helpers/database.js';
import { appendMany, makeAuditLogger, rehashFrom, sampleEvent, silent } from './support.js';

const DAY = 86_400_000;

describeStorage('audit checkpoints', (backend) => {
  let t: TestDatabase;
  let clock: ManualClock;
  let checkpointer: AuditCheckpointer;
  beforeEach(async () => {
    t = await openTestDatabase(backend);
    clock = new ManualClock();
    checkpointer = new AuditCheckpointer({
      audits: new AuditRepository(t.database),
      clock,
      logger: silent,
      dataDir: t.home.dataDir,
    });
  });
  afterEach(async () => {
    checkpointer?.stop();
    await t?.close();
  });

  it('generates the signing key once, outside the database, readable by its owner only', () => {
    const file = path.join(t.home.dataDir, SIGNING_KEY_FILE);
    expect(statSync(file).mode & 0o777).to.equal(0o600);
    expect(readFileSync(file, 'utf8')).to.match(/^-----BEGIN PRIVATE KEY-----/);
    const again = new AuditCheckpointer({
      audits: new AuditRepository(t.database),
      clock,
      logger: silent,
      dataDir: t.home.dataDir,
    });
    expect(keyId(again.publicKey)).to.equal(keyId(checkpointer.publicKey));
  });

  it('signs the head into a JSON Lines file, chained, and the chain verifies against it', async () => {
    const { audit } = makeAuditLogger(t.database, clock);
    const empty = await checkpointer.checkpointNow();
    expect(empty).to.deep.include({ seq: 0, hash: '0'.repeat(64) });
    await appendMany(audit, 5);
    const cp1 = await checkpointer.checkpointNow();
    await appendMany(audit, 5);
    const cp2 = await checkpointer.checkpointNow();
    expect(cp1.seq).to.equal(5);
    expect(cp2.seq).to.equal(10);
    expect(cp2.hash).to.equal((await audit.head()).hash);
    const file = path.join(t.home.dataDir, 'audit-checkpoints.jsonl');
    expect(statSync(file).mode & 0o777).to.equal(0o600);
    const read = await checkpointer.readCheckpoints();
    expect(read).to.deep.equal([empty, cp1, cp2]);
    expect(await checkpointer.verify()).to.deep.equal({ ok: true, checked: 3, skipped: 0, failure: null });
  });

  it('start() checkpoints on its interval only when the head moved', async () => {
    const fast = new AuditCheckpointer({
      audits: new AuditRepository(t.database),
      clock,
      logger: silent,
      dataDir: t.home.dataDir,
      intervalMs: 20,
    });
    const { audit } = makeAuditLogger(t.database, clock);
    await appendMany(audit, 2);
    fast.start();
    await new Promise((r) => setTimeout(r, 200));
    fast.stop();
    const cps = await fast.readCheckpoints();
    expect(cps).to.have.length(1);
    expect(cps[0]!.seq).to.equal(2);
  });

  it('a truncated tail passes plain verify but fails against the checkpoints, named', async () => {
    const { audit } = makeAuditLogger(t.database, clock);
    await appendMany(audit, 10);
    await checkpointer.checkpointNow();
    // The attacker deletes the last three entries and moves the head back, so the table looks whole.
    const newLast = await t.database.db
      .selectFrom('audit_log')
      .select(['seq', 'hash'])
      .where('seq', '=', 7)
      .executeTakeFirstOrThrow();
    await t.database.db.deleteFrom('audit_log').where('seq', '>', 7).execute();
    await t.database.db
      .updateTable('audit_head')
      .set({ seq: 7, hash: newLast.hash })
      .where('id', '=', 'chain')
      .execute();
    expect((await verifyChain(t.database)).ok).to.equal(true);
    const r = await checkpointer.verify();
    expect(r.ok).to.equal(false);
    expect(r.failure).to.deep.include({ seq: 10, reason: 'truncated tail' });
    expect(r.failure!.message).to.include('the log ends at seq 7');
  });

  it('a rewritten chain (changed, then re-hashed) passes plain verify but fails against the checkpoints', async () => {
    const { audit } = makeAuditLogger(t.database, clock);
    await appendMany(audit, 4);
    await checkpointer.checkpointNow(); // seq 4: before the change, still true afterwards
    await appendMany(audit, 6);
    await checkpointer.checkpointNow(); // seq 10
    await t.database.db.updateTable('audit_log').set({ details: '{"n":"forged"}' }).where('seq', '=', 6).execute();
    await rehashFrom(t.database, 6);
    expect((await verifyChain(t.database)).ok).to.equal(true);
    const r = await checkpointer.verify();
    expect(r.failure).to.deep.include({ index: 1, seq: 10, reason: 'rewritten chain' });
    expect(r.checked).to.equal(1);
  });

  it("refuses a forged or removed checkpoint, and another key's signature", async () => {
    const { audit } = makeAuditLogger(t.database, clock);
    await appendMany(audit, 3);
    const a = await checkpointer.checkpointNow();
    await appendMany(audit, 3);
    const b = await checkpointer.checkpointNow();
    await appendMany(audit, 3);
    const c = await checkpointer.checkpointNow();
    const forged: Checkpoint = { ...b, seq: 4 };
    expect((await checkpointer.verify([a, forged, c])).failure).to.deep.include({ index: 1, reason: 'bad signature' });
    expect((await checkpointer.verify([a, c])).failure).to.deep.include({ index: 1, reason: 'checkpoint chain' });
    const other = new AuditCheckpointer({
      audits: new AuditRepository(t.database),
      clock,
      logger: silent,
      dataDir: t.home.dataDir,
      privateKey: generateKeyPairSync('ed25519').privateKey,
      file: path.join(t.home.dataDir, 'other.jsonl'),
    });
    expect((await other.verify([a])).failure).to.deep.include({ index: 0, reason: 'bad signature' });
  });
});

describeStorage('audit retention', (backend) => {
  let t: TestDatabase;
  let clock: ManualClock;
  let archiveDir: string;
  beforeEach(async () => {
    t = await openTestDatabase(backend);
    clock = new ManualClock();
    archiveDir = path.join(t.home.dataDir, 'audit-archive');
  });
  afterEach(async () => t?.close());

  it('archives old entries to a JSON Lines file, deletes them, and the chain still verifies across the cut', async () => {
    const { audit } = makeAuditLogger(t.database, clock);
    const checkpointer = new AuditCheckpointer({
      audits: new AuditRepository(t.database),
      clock,
      logger: silent,
      dataDir: t.home.dataDir,
    });
    await appendMany(audit, 20);
    await checkpointer.checkpointNow(); // seq 20: will be the last archived entry
    await appendMany(audit, 10);
    await checkpointer.checkpointNow(); // seq 30
    clock.advance(40 * DAY);
    await appendMany(audit, 5);
    await checkpointer.checkpointNow(); // seq 35

    const retention = new AuditRetention({
      database: t.database,
      audits: new AuditRepository(t.database),
      clock,
      logger: silent,
      archiveDir,
      maxAgeMs: 30 * DAY,
      maxEntriesPerRun: 20,
    });
    const first = await retention.runOnce();
    expect(first).to.deep.include({ firstSeq: 1, lastSeq: 20, entries: 20 });
    const second = await retention.runOnce();
    expect(second).to.deep.include({ firstSeq: 21, lastSeq: 30, entries: 10 });
    expect(await retention.runOnce()).to.equal(null);

    expect(readdirSync(archiveDir).sort()).to.deep.equal([archiveFileName(1, 20), archiveFileName(21, 30)]);
    const lines = readFileSync(path.join(archiveDir, archiveFileName(1, 20)), 'utf8')
      .trim()
      .split('\n');
    expect(lines.map((l) => (JSON.parse(l) as AuditRecord).seq)).to.deep.equal(
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
    const kept = await t.database.db.selectFrom('audit_log').select('seq').orderBy('seq', 'asc').execute();
    expect(kept.map((r) => Number(r.seq))).to.deep.equal([31, 32, 33, 34, 35]);

    expect(await verifyChain(t.database)).to.deep.include({ ok: true, entries: 5, archivedEntries: 0, firstSeq: 31 });
    expect(await verifyChain(t.database, { archiveDir })).to.deep.include({
      ok: true,
      entries: 5,
      archivedEntries: 30,
      firstSeq: 1,
    });
    // Appends continue the chain after the cut.
    await audit.record(sampleEvent(99));
    expect((await verifyChain(t.database)).ok).to.equal(true);
    // Checkpoints: the cut's last entry is checked from the cut record, seq 30 likewise; with the files, all are.
    expect(await checkpointer.verify()).to.deep.include({ ok: true, checked: 3, skipped: 0 });
    expect(await checkpointer.verify(undefined, { archiveDir })).to.deep.include({ ok: true, checked: 3 });
  });

  it('a changed archive file, or head entries deleted without a cut record, fail verify', async () => {
    const { audit } = makeAuditLogger(t.database, clock);
    await appendMany(audit, 10);
    clock.advance(2 * DAY);
    await appendMany(audit, 2);
    const retention = new AuditRetention({
      database: t.database,
      audits: new AuditRepository(t.database),
      clock,
      logger: silent,
      archiveDir,
      maxAgeMs: DAY,
    });
    await retention.runOnce();
    const file = path.join(archiveDir, archiveFileName(1, 10));
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    const forged = JSON.parse(lines[4]!) as AuditRecord;
    forged.details = { n: 'forged' };
    lines[4] = JSON.stringify(forged);
    writeFileSync(file, `${lines.join('\n')}\n`);
    expect((await verifyChain(t.database)).ok).to.equal(true); // without the files, the cut record is trusted
    expect((await verifyChain(t.database, { archiveDir })).failure).to.deep.include({
      seq: 5,
      reason: 'hash mismatch',
    });

    await t.database.db.deleteFrom('audit_archive').execute();
    expect((await verifyChain(t.database)).failure).to.deep.include({ seq: 11, reason: 'gap in seq' });
  });
});
