import { expect } from 'chai';
import { sql } from 'kysely';
import { Database, type PreparedRead } from '../../daemon/storage/database.js';
import type { WriteGenerations } from '../../daemon/storage/write-generations.js';
import { createLogger } from '../../daemon/logger.js';
import { describeStorage } from '../helpers/backends.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

type Meta = { value: string };

/** gateway_meta is a plain key/value table: a neutral place to test the read path. */
function metaRead(
  database: Database,
  cache?: { ttlMs: number; maxEntries?: number },
): PreparedRead<{ key: string }, Meta> {
  return database.prepareRead(
    (db, p: { key: string }) => db.selectFrom('gateway_meta').select('value').where('key', '=', p.key),
    {
      ...(cache
        ? { cache: { tables: ['gateway_meta'], ttlMs: cache.ttlMs, maxEntries: cache.maxEntries ?? 100 } }
        : {}),
    },
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeStorage('storage: prepared reads', (backend) => {
  let t: TestDatabase;
  /** A second connection to the same database: a writer the daemon does not see (another process). */
  let outside: Database;
  before(async () => {
    t = await openTestDatabase(backend, { keepReads: true });
    outside = new Database({
      url: t.home.databaseUrl,
      poolMax: 2,
      connectTimeoutMs: 2000,
      busyTimeoutMs: 5000,
      logger: createLogger('silent'),
    });
  });
  after(async () => {
    await outside?.close();
    await t?.close();
  });

  const db = () => t.database;
  const put = (key: string, value: string, via: Database = db()) =>
    via.db
      .insertInto('gateway_meta')
      .values({ key, value })
      .onConflict((oc) => oc.column('key').doUpdateSet({ value }))
      .execute();

  it('binds each call its own values, and finds nothing for a missing key', async () => {
    const read = metaRead(db());
    await put('pr-a', 'alpha');
    await put('pr-b', 'beta');
    expect(await read.first({ key: 'pr-a' })).to.deep.equal({ value: 'alpha' });
    expect(await read.first({ key: 'pr-b' })).to.deep.equal({ value: 'beta' });
    expect(await read.first({ key: 'pr-none' })).to.equal(undefined);
    // A value that looks like SQL is a bound value, never text of the statement.
    expect(await read.first({ key: "x' or '1'='1" })).to.equal(undefined);
  });

  it('reads inside a transaction see its uncommitted rows; reads outside never do', async () => {
    const read = metaRead(db(), { ttlMs: 60_000 });
    await put('pr-tx', 'before');
    expect((await read.first({ key: 'pr-tx' }))!.value).to.equal('before');
    let outsideDuring: Meta | undefined;
    let pending: Promise<unknown> = Promise.resolve();
    await db().transaction(async (tx) => {
      await tx.updateTable('gateway_meta').set({ value: 'during' }).where('key', '=', 'pr-tx').execute();
      expect((await read.first({ key: 'pr-tx' }, tx))!.value).to.equal('during');
      // A read from outside while the transaction is open: on SQLite (one connection) it waits
      // for the commit; on Postgres it sees the last commit. Never the uncommitted row, never a kept one.
      pending = read.first({ key: 'pr-tx' }).then((r) => (outsideDuring = r));
      // Long enough for Postgres to open a second pool connection on a loaded machine.
      await sleep(250);
      if (backend === 'postgres') expect(outsideDuring!.value).to.equal('before');
      else expect(outsideDuring).to.equal(undefined);
    });
    await pending;
    if (backend === 'sqlite') expect(outsideDuring!.value).to.equal('during');
    expect((await read.first({ key: 'pr-tx' }))!.value).to.equal('during');
  });

  it('drops what it kept at the daemon’s next write to the table, and after a rolled-back one', async () => {
    const read = metaRead(db(), { ttlMs: 60_000 });
    await put('pr-w', 'one');
    expect((await read.first({ key: 'pr-w' }))!.value).to.equal('one');
    await put('pr-w', 'two');
    expect((await read.first({ key: 'pr-w' }))!.value).to.equal('two');
    await db()
      .transaction(async (tx) => {
        await tx.updateTable('gateway_meta').set({ value: 'never' }).where('key', '=', 'pr-w').execute();
        throw new Error('roll back');
      })
      .catch(() => undefined);
    expect((await read.first({ key: 'pr-w' }))!.value).to.equal('two');
    await db().db.deleteFrom('gateway_meta').where('key', '=', 'pr-w').execute();
    expect(await read.first({ key: 'pr-w' })).to.equal(undefined);
  });

  if (backend === 'sqlite') {
    it('keeps a row on SQLite: an outside write goes unseen until the bound passes', async () => {
      const read = metaRead(db(), { ttlMs: 300 });
      await put('pr-out', 'kept');
      expect((await read.first({ key: 'pr-out' }))!.value).to.equal('kept');
      await put('pr-out', 'outside', outside);
      expect((await read.first({ key: 'pr-out' }))!.value).to.equal('kept');
      await sleep(350);
      expect((await read.first({ key: 'pr-out' }))!.value).to.equal('outside');
    });

    it('bounds what it keeps: the oldest key goes first', async () => {
      const read = metaRead(db(), { ttlMs: 60_000, maxEntries: 2 });
      for (const k of ['pr-m1', 'pr-m2', 'pr-m3']) await put(k, 'v');
      for (const k of ['pr-m1', 'pr-m2', 'pr-m3']) await read.first({ key: k });
      await put('pr-m1', 'changed', outside);
      await put('pr-m3', 'changed', outside);
      // pr-m1 was evicted, so it is read again; pr-m3 is still kept.
      expect((await read.first({ key: 'pr-m1' }))!.value).to.equal('changed');
      expect((await read.first({ key: 'pr-m3' }))!.value).to.equal('v');
    });
    it('keeps nothing when opened without keepReads, as tools beside a running daemon open it', async () => {
      const read = metaRead(outside, { ttlMs: 60_000 });
      await put('pr-tool', 'first');
      expect((await read.first({ key: 'pr-tool' }))!.value).to.equal('first');
      await put('pr-tool', 'second');
      expect((await read.first({ key: 'pr-tool' }))!.value).to.equal('second');
    });
  } else {
    it('keeps a row on Postgres until another connection’s write is announced (invalidation.ts)', async () => {
      const read = metaRead(db(), { ttlMs: 60_000 });
      for (let i = 0; i < 100 && !db().cacheState!.serving; i++) await sleep(20);
      await put('pr-out', 'kept');
      expect((await read.first({ key: 'pr-out' }))!.value).to.equal('kept');
      const heard = db().cacheState!.notifications;
      await put('pr-out', 'outside', outside);
      for (let i = 0; i < 100 && db().cacheState!.notifications === heard; i++) await sleep(10);
      expect((await read.first({ key: 'pr-out' }))!.value).to.equal('outside');
    });
  }
});

describe('storage: WriteGenerations', () => {
  let database: Database;
  let writes: WriteGenerations;
  before(async () => {
    database = new Database({
      url: 'sqlite::memory:',
      poolMax: 1,
      connectTimeoutMs: 1000,
      busyTimeoutMs: 1000,
      logger: createLogger('silent'),
      keepReads: true,
    });
    writes = (database as unknown as { writes: WriteGenerations }).writes;
    await sql`create table a (id text primary key, v text)`.execute(database.db);
    await sql`create table b (id text primary key, v text)`.execute(database.db);
  });
  after(async () => database.close());

  const gens = () => ({ a: writes.generation(['a' as never]), b: writes.generation(['b' as never]) });
  const kdb = () =>
    database.db as unknown as import('kysely').Kysely<{ a: { id: string; v: string }; b: { id: string; v: string } }>;

  it('counts inserts, updates and deletes against their own table only', async () => {
    const start = gens();
    await kdb().insertInto('a').values({ id: '1', v: 'x' }).execute();
    const afterInsert = gens();
    expect(afterInsert.a).to.be.greaterThan(start.a);
    expect(afterInsert.b).to.equal(start.b);
    await kdb().updateTable('b').set({ v: 'y' }).where('id', '=', '1').execute();
    const afterUpdate = gens();
    expect(afterUpdate.b).to.be.greaterThan(afterInsert.b);
    expect(afterUpdate.a).to.equal(afterInsert.a);
    await kdb().deleteFrom('a').where('id', '=', '1').execute();
    expect(gens().a).to.be.greaterThan(afterUpdate.a);
  });

  it('leaves the counters alone for selects and transaction control', async () => {
    const start = gens();
    await kdb().selectFrom('a').selectAll().execute();
    await sql`select count(*) from b where v like ${'update%'}`.execute(database.db);
    await database.transaction(async (tx) => {
      await (tx as unknown as ReturnType<typeof kdb>).selectFrom('b').selectAll().execute();
    });
    expect(gens()).to.deep.equal(start);
  });

  it('counts raw SQL that may write against every table', async () => {
    const start = gens();
    await sql`update a set v = 'z'`.execute(database.db);
    const after = gens();
    expect(after.a).to.be.greaterThan(start.a);
    expect(after.b).to.be.greaterThan(start.b);
  });
});

describeStorage('storage: work just before commit', (backend) => {
  let t: TestDatabase;
  before(async () => {
    t = await openTestDatabase(backend);
  });
  after(async () => t?.close());
  const value = async (key: string) =>
    (await t.database.db.selectFrom('gateway_meta').select('value').where('key', '=', key).executeTakeFirst())?.value;

  it('runs hooks in order inside the transaction, after its function, then commits them with it', async () => {
    const order: string[] = [];
    await t.database.transaction(async (trx) => {
      expect(
        t.database.beforeCommit(trx, async () => {
          order.push('hook 1');
          await trx.insertInto('gateway_meta').values({ key: 'bc-1', value: 'hooked' }).execute();
          // A hook may add another; it runs too.
          t.database.beforeCommit(trx, async () => void order.push('hook 3'));
        }),
      ).to.equal(true);
      t.database.beforeCommit(trx, async () => void order.push('hook 2'));
      await trx.insertInto('gateway_meta').values({ key: 'bc-0', value: 'body' }).execute();
      order.push('body');
    });
    expect(order).to.deep.equal(['body', 'hook 1', 'hook 2', 'hook 3']);
    expect(await value('bc-0')).to.equal('body');
    expect(await value('bc-1')).to.equal('hooked');
  });

  it('rolls everything back when a hook throws, and runs no hook when the function throws', async () => {
    const failing = t.database.transaction(async (trx) => {
      await trx.insertInto('gateway_meta').values({ key: 'bc-2', value: 'body' }).execute();
      t.database.beforeCommit(trx, async () => {
        throw new Error('hook failed');
      });
    });
    await failing.then(
      () => expect.fail('the transaction committed'),
      (err: Error) => expect(err.message).to.equal('hook failed'),
    );
    expect(await value('bc-2')).to.equal(undefined);
    let ran = false;
    await t.database
      .transaction(async (trx) => {
        t.database.beforeCommit(trx, async () => void (ran = true));
        throw new Error('body failed');
      })
      .catch(() => undefined);
    expect(ran).to.equal(false);
  });

  it('refuses a handle that is not an open transaction (the caller then does the work at once)', async () => {
    expect(t.database.beforeCommit(t.database.db, async () => undefined)).to.equal(false);
    let kept: Parameters<Parameters<Database['transaction']>[0]>[0] | null = null;
    await t.database.transaction(async (trx) => void (kept = trx));
    expect(t.database.beforeCommit(kept!, async () => undefined)).to.equal(false);
  });
});
