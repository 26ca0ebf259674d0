import { expect } from 'chai';
import { createLogger } from '../../../daemon/logger.js';
import { Database, isKept, type PreparedRead } from '../../../daemon/storage/database.js';
import { announcedTables } from '../../../daemon/storage/invalidation.js';
import { migrateToLatest } from '../../../daemon/storage/migrator.js';
import { IN_CI, TEST_POSTGRES_URL } from '../../helpers/env.js';
import { FaultProxy } from '../../helpers/fault-proxy.js';
import { createTestSchema, type TestSchema } from '../../helpers/postgres.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, cond: () => boolean, timeoutMs = 5000): Promise<number> {
  const start = performance.now();
  while (!cond()) {
    if (performance.now() - start > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(5);
  }
  return performance.now() - start;
}

describe('storage: which writes are announced to the fleet', () => {
  it('names the kept tables a statement writes, and nothing for reads', () => {
    expect(announcedTables('update "api_keys" set "revoked_at" = $1 where "id" = $2')).to.deep.equal(['api_keys']);
    expect(announcedTables('insert into "users" ("id") values ($1)')).to.deep.equal(['users']);
    expect(announcedTables('delete from "refresh_tokens" where "id" = $1')).to.deep.equal(['refresh_tokens']);
    expect(announcedTables('insert into "credit_ledger" ("id") values ($1)')).to.equal(null);
    expect(announcedTables('select * from "credit_accounts" where "user_id" = $1 for update')).to.equal(null);
    expect(announcedTables('select 1')).to.equal(null);
    // An upsert's DO UPDATE SET is not a second table.
    expect(
      announcedTables('insert into "gateway_meta" ("key") values ($1) on conflict ("key") do update set "value" = $2'),
    ).to.deep.equal(['gateway_meta']);
    expect(
      announcedTables('with x as (update "credit_accounts" set "balance" = 1 returning 1) select * from x'),
    ).to.deep.equal(['credit_accounts']);
  });

  it('drops everything for a write whose tables it cannot tell (DDL, raw SQL)', () => {
    expect(announcedTables('alter table "users" add column "x" text')).to.deep.equal(['*']);
    expect(announcedTables('truncate users')).to.deep.equal(['*']);
    expect(announcedTables('update')).to.deep.equal(['*']);
  });
});

(TEST_POSTGRES_URL || IN_CI ? describe : describe.skip)(
  'storage: kept rows on Postgres, invalidated by notification [postgres]',
  () => {
    let schema: TestSchema;
    let proxy: FaultProxy;
    /** Another daemon (or a tool): writes, keeps nothing. */
    let writer: Database;
    /** The daemon under test: keeps rows, listens through the proxy; its pool goes straight to Postgres. */
    let keeper: Database;
    let read: PreparedRead<{ key: string }, { value: string }>;
    const TTL_MS = 600;

    before(async function () {
      this.timeout(30_000);
      if (!TEST_POSTGRES_URL) throw new Error('KEEN_TEST_POSTGRES_URL is not set');
      schema = await createTestSchema();
      proxy = FaultProxy.for(TEST_POSTGRES_URL);
      await proxy.start();
      const logger = createLogger('silent');
      const base = { url: schema.url, poolMax: 4, connectTimeoutMs: 2000, busyTimeoutMs: 2000, logger };
      writer = new Database(base);
      await migrateToLatest(writer);
      keeper = new Database({
        ...base,
        keepReads: true,
        invalidation: { url: proxy.url(schema.url), pingIntervalMs: 200, pingTimeoutMs: 300 },
      });
      read = keeper.prepareRead(
        (db, p: { key: string }) => db.selectFrom('gateway_meta').select('value').where('key', '=', p.key),
        {
          cache: { tables: ['gateway_meta'], ttlMs: TTL_MS, maxEntries: 100 },
        },
      );
      await waitFor('the listener connects', () => keeper.cacheState!.serving);
    });
    after(async () => {
      await keeper?.close();
      await writer?.close();
      await proxy?.close();
      await schema?.drop();
    });

    const put = (key: string, value: string) =>
      writer.db
        .insertInto('gateway_meta')
        .values({ key, value })
        .onConflict((oc) => oc.column('key').doUpdateSet({ value }))
        .execute();
    const value = async (key: string) => (await read.first({ key }))?.value;
    const heardAfter = (since: number) =>
      waitFor('the write announced', () => keeper.cacheState!.notifications > since, 2000);

    it('keeps a row (Kept, the same object) until another connection writes its table', async () => {
      const start = keeper.cacheState!.notifications;
      await put('ci-a', 'one');
      await heardAfter(start);
      const first = await read.first({ key: 'ci-a' });
      const second = await read.first({ key: 'ci-a' });
      expect(second).to.equal(first);
      expect(isKept(second!)).to.equal(true);
      const since = keeper.cacheState!.notifications;
      await put('ci-a', 'two');
      await heardAfter(since);
      expect(await value('ci-a')).to.equal('two');
    });

    it('announces a transaction once it commits, and a rolled-back one never', async () => {
      const start = keeper.cacheState!.notifications;
      await put('ci-tx', 'before');
      await heardAfter(start);
      expect(await value('ci-tx')).to.equal('before');
      const since = keeper.cacheState!.notifications;
      await writer
        .transaction(async (trx) => {
          await trx.updateTable('gateway_meta').set({ value: 'never' }).where('key', '=', 'ci-tx').execute();
          throw new Error('roll back');
        })
        .catch(() => undefined);
      await sleep(200);
      expect(keeper.cacheState!.notifications).to.equal(since);
      await writer.transaction(async (trx) => {
        await trx.updateTable('gateway_meta').set({ value: 'committed' }).where('key', '=', 'ci-tx').execute();
        // Not yet committed: nothing announced, and the keeper still reads the committed value.
        await sleep(100);
        expect(keeper.cacheState!.notifications).to.equal(since);
        expect(await value('ci-tx')).to.equal('before');
      });
      await heardAfter(since);
      expect(await value('ci-tx')).to.equal('committed');
    });

    it('drops at its own commit what it read during its transaction (not waiting for its notification)', async () => {
      const start = keeper.cacheState!.notifications;
      await put('ci-own', 'before');
      await heardAfter(start);
      await keeper.transaction(async (trx) => {
        await trx.updateTable('gateway_meta').set({ value: 'after' }).where('key', '=', 'ci-own').execute();
        // Another connection of the same daemon, meanwhile: reads (and keeps) the last committed row.
        expect(await value('ci-own')).to.equal('before');
        expect(await value('ci-own')).to.equal('before');
      });
      // The very next read, before any notification could be handled: the committed row.
      expect(await value('ci-own')).to.equal('after');
    });

    it('reset: serves nothing kept while the listener is down, and drops what it kept once back', async () => {
      await put('ci-reset', 'kept');
      expect(await value('ci-reset')).to.equal('kept');
      const losses = keeper.cacheState!.losses;
      proxy.reset();
      await waitFor('the loss noticed', () => keeper.cacheState!.losses > losses);
      expect(keeper.cacheState!.serving).to.equal(false);
      // Written while the keeper hears nothing: its pool still reads Postgres, so it sees the write.
      await put('ci-reset', 'written while deaf');
      expect(await value('ci-reset')).to.equal('written while deaf');
      proxy.resume();
      await waitFor('the listener back', () => keeper.cacheState!.serving, 10_000);
      expect(await value('ci-reset')).to.equal('written while deaf');
      // Keeping again.
      const first = await read.first({ key: 'ci-reset' });
      expect(await read.first({ key: 'ci-reset' })).to.equal(first);
    });

    it('blackhole: a silent link is noticed by its ping; until then a kept row lives at most its TTL', async () => {
      await put('ci-silent', 'kept');
      expect(await value('ci-silent')).to.equal('kept');
      const losses = keeper.cacheState!.losses;
      proxy.blackhole();
      const cutAt = performance.now();
      await put('ci-silent', 'unheard');
      // Served from memory at most TTL_MS after it was read (the notification is lost in the partition).
      while ((await value('ci-silent')) !== 'unheard') {
        expect(performance.now() - cutAt, 'stale beyond the TTL').to.be.below(TTL_MS + 500);
        await sleep(20);
      }
      // Noticed within the ping interval plus its timeout (200 + 300 ms), with slack for a loaded machine.
      await waitFor('the silence noticed', () => keeper.cacheState!.losses > losses, 3000);
      expect(performance.now() - cutAt).to.be.below(200 + 300 + 1000);
      expect(keeper.cacheState!.serving).to.equal(false);
      proxy.resume();
      await waitFor('the listener back', () => keeper.cacheState!.serving, 10_000);
      expect(await value('ci-silent')).to.equal('unheard');
    });
  },
);
