import { expect } from 'chai';
import { sql } from 'kysely';
import { describeStorage } from '../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { migrateToLatest, pendingMigrations, latestMigration } from '../../daemon/storage/migrator.js';

describeStorage('storage', (backend) => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon({ backend });
  });
  after(async () => d?.stop());

  it('has applied every migration, and applying again changes nothing', async () => {
    const db = d.container.database;
    expect(await pendingMigrations(db)).to.deep.equal([]);
    const again = await migrateToLatest(db);
    expect(again.applied).to.deep.equal([]);
    expect(again.current).to.equal(latestMigration());
  });

  it('commits a transaction that resolves and rolls back one that throws', async () => {
    const db = d.container.database;
    await db.transaction(async (trx) => {
      await trx.insertInto('gateway_meta').values({ key: 'tx-ok', value: '1' }).execute();
    });
    await db
      .transaction(async (trx) => {
        await trx.insertInto('gateway_meta').values({ key: 'tx-fail', value: '1' }).execute();
        throw new Error('boom');
      })
      .catch((e: Error) => expect(e.message).to.equal('boom'));
    const keys = (await db.db.selectFrom('gateway_meta').select('key').execute()).map((r) => r.key);
    expect(keys).to.include('tx-ok');
    expect(keys).not.to.include('tx-fail');
  });

  it('serializes concurrent read-modify-write transactions (no lost update)', async () => {
    const db = d.container.database;
    await db.db.insertInto('gateway_meta').values({ key: 'counter', value: '0' }).execute();
    await Promise.all(
      Array.from({ length: 40 }, () =>
        db.transaction(async (trx) => {
          const q = trx.selectFrom('gateway_meta').select('value').where('key', '=', 'counter');
          const row = await (db.dialect === 'postgres' ? q.forUpdate() : q).executeTakeFirstOrThrow();
          await trx
            .updateTable('gateway_meta')
            .set({ value: String(Number(row.value) + 1) })
            .where('key', '=', 'counter')
            .execute();
        }),
      ),
    );
    const row = await db.db
      .selectFrom('gateway_meta')
      .select('value')
      .where('key', '=', 'counter')
      .executeTakeFirstOrThrow();
    expect(row.value).to.equal('40');
  });

  it('pings within a bound', async () => {
    await d.container.database.ping(1000);
    const r = await sql<{ one: number }>`select 1 as one`.execute(d.container.database.db);
    expect(Number(r.rows[0]!.one)).to.equal(1);
  });

  if (backend === 'sqlite') {
    it('runs SQLite in WAL mode with foreign keys on and a busy timeout', async () => {
      const db = d.container.database.db;
      const mode = await sql<{ journal_mode: string }>`pragma journal_mode`.execute(db);
      expect(mode.rows[0]!.journal_mode).to.equal('wal');
      const fk = await sql<{ foreign_keys: number }>`pragma foreign_keys`.execute(db);
      expect(fk.rows[0]!.foreign_keys).to.equal(1);
      const bt = await sql<{ timeout: number }>`pragma busy_timeout`.execute(db);
      expect(Number(Object.values(bt.rows[0]!)[0])).to.be.greaterThan(0);
    });
  }
});
