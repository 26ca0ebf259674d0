import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { unlinkSync } from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { canMount, describeRoot, fill, mountTmpfs } from '../helpers/disk.js';
import { IN_CI, TEST_POSTGRES_URL } from '../helpers/env.js';
import { buildUser, mintToken, platformAdmin, uniqueEmail, type TestUser } from '../helpers/factories.js';
import type { ApiResponse } from '../helpers/http.js';
import { createTestSchema, type TestSchema } from '../helpers/postgres.js';

/** The documented answer to a write that found no space: 507 in the error envelope, a Retry-After, no path. */
function expectInsufficientStorage(r: ApiResponse, d: TestDaemon): void {
  expect(r.status, r.text).to.equal(507);
  expect(r.body.success).to.equal(false);
  expect(r.body.error).to.include({ type: 'SYSTEM_ERROR', code: 'INSUFFICIENT_STORAGE' });
  expect(r.body.error.message).to.match(/storage/i);
  expect(r.body.request_id).to.be.a('string');
  expect(Number(r.headers.get('retry-after'))).to.be.at.least(1);
  for (const leak of [d.home.dataDir, 'keen.db', 'SQLITE', 'No space left', 'could not extend'])
    expect(r.text).to.not.include(leak);
}

describe('a full SQLite database [sqlite]', function () {
  this.timeout(30_000);
  let d: TestDaemon;
  let root: string;
  let u: TestUser;

  before(async () => {
    d = await startDaemon();
    root = mintToken(d, await platformAdmin(d));
    u = await buildUser(d);
  });
  after(async () => d?.stop());

  const grant = (amount: number) =>
    d.api.post('/v1/admin/credits/grant', { user_id: u.user.id, amount, reason: 'disk test' }, { token: root });
  const balance = async () => (await d.api.get('/v1/credits/balance', { token: u.token })).body.balance as number;

  /**
   * SQLite's own "database or disk is full" (SQLITE_FULL), on the daemon's
   * connection: the file may not grow past its current size (max_page_count),
   * and a filler table takes the free pages left inside it.
   */
  async function fillDatabase(): Promise<void> {
    const db = d.container.database.db;
    await sql`create table if not exists test_filler (data blob)`.execute(db);
    const pages = (await sql<{ page_count: number }>`pragma page_count`.execute(db)).rows[0]!.page_count;
    await sql.raw(`pragma max_page_count = ${pages}`).execute(db);
    for (let i = 0; i < 100_000; i++) {
      try {
        await sql`insert into test_filler values (randomblob(1000))`.execute(db);
      } catch (err) {
        if ((err as { code?: string }).code === 'SQLITE_FULL') return;
        throw err;
      }
    }
    throw new Error('the database never filled up');
  }
  async function freeDatabase(): Promise<void> {
    await sql.raw('pragma max_page_count = 1073741823').execute(d.container.database.db);
  }

  it('a write answers 507 INSUFFICIENT_STORAGE with Retry-After, writes nothing, and succeeds again once there is room', async () => {
    expect((await grant(5)).status).to.equal(201);
    expect(await balance()).to.equal(5);
    await fillDatabase();

    // Rows still fit in the free room of existing pages for a while; the first write that needs a new page is refused.
    const create = (email: string) => d.api.post('/v1/admin/users', { email, tier: 'team' }, { token: root });
    let refusedEmail: string | null = null;
    let created = 0;
    for (let i = 0; i < 500 && !refusedEmail; i++) {
      const email = uniqueEmail('full');
      const r = await create(email);
      if (r.status === 201) created++;
      else {
        expectInsufficientStorage(r, d);
        refusedEmail = email;
      }
    }
    expect(refusedEmail, `no 507 after ${created} users`).to.not.equal(null);
    let granted = 0;
    let refusedGrant = false;
    for (let i = 0; i < 500 && !refusedGrant; i++) {
      const r = await grant(1);
      if (r.status === 201) granted++;
      else {
        expectInsufficientStorage(r, d);
        refusedGrant = true;
      }
    }
    expect(refusedGrant, `no 507 after ${granted} grants`).to.equal(true);
    // Nothing half-written: no refused user, the balance and the ledger hold exactly the grants answered 201.
    const db = d.container.database.db;
    expect(await db.selectFrom('users').select('id').where('email', '=', refusedEmail!).executeTakeFirst()).to.equal(
      undefined,
    );
    expect(await balance()).to.equal(5 + granted);
    const ledger = await db.selectFrom('credit_ledger').select('id').where('user_id', '=', u.user.id).execute();
    expect(ledger).to.have.length(1 + granted);
    // Reads still work, and it is not logged as an unexpected error.
    expect((await d.api.get('/v1/me', { token: u.token })).status).to.equal(200);
    const logs = d.logs.join('');
    expect(logs).to.not.include('unhandled error');
    expect(logs).to.include('storage is full');

    // Room again (as after an operator freed space): the same requests succeed, no restart.
    await freeDatabase();
    const again = await create(refusedEmail!);
    expect(again.status, again.text).to.equal(201);
    expect((await grant(7)).status).to.equal(201);
    expect(await balance()).to.equal(12 + granted);
    const actions = (
      await db.selectFrom('audit_log').select('action').where('target_id', '=', again.body.user.id).execute()
    ).map((r) => r.action);
    expect(actions).to.include('user.create');
  });
});

describeRoot('free disk space: readiness and writes on a real full file system [sqlite, tmpfs]', function () {
  this.timeout(60_000);
  let fs: { dir: string; unmount(): void } | undefined;
  let d: TestDaemon;
  let root: string;
  let filler: string;

  before(async () => {
    if (!canMount) throw new Error('mounting a tmpfs needs root: CI runs as root');
    fs = mountTmpfs(24);
    filler = path.join(fs.dir, 'filler.bin');
    d = await startDaemon({
      databaseUrl: `sqlite:${path.join(fs.dir, 'keen.db')}`,
      config: { data_dir: fs.dir, server: { min_free_disk_mb: 8 } },
    });
    root = mintToken(d, await platformAdmin(d));
  });
  after(async () => {
    await d?.stop();
    fs?.unmount();
  });

  const createUser = () =>
    d.api.post('/v1/admin/users', { email: uniqueEmail('tmpfs'), tier: 'individual' }, { token: root });

  it('readiness fails while free space is below server.min_free_disk_mb, writes answer 507 when there is none, and both recover once space is freed', async () => {
    const ok = await d.api.get('/health/ready');
    expect(ok.status, ok.text).to.equal(200);
    expect(ok.body.checks).to.deep.equal({ database: 'ok', disk: 'ok' });

    // Below the threshold, not yet full: out of the load balancer, still answering.
    fill(filler, 4 * 1024 * 1024);
    const low = await d.api.get('/health/ready');
    expect(low.status, low.text).to.equal(503);
    expect(low.body.error).to.include({ type: 'SYSTEM_ERROR', code: 'UNAVAILABLE' });
    expect(low.body.error.message).to.include('disk');
    expect(low.body.error.details.checks).to.deep.equal({ database: 'ok', disk: 'fail' });
    expect(low.text).to.not.include(fs!.dir);
    expect((await d.api.get('/health/live')).status).to.equal(200);
    expect((await createUser()).status).to.equal(201);

    // Full: a write that needs room answers 507, never 500; what was answered 201 is there, nothing else.
    fill(filler, 0);
    const statuses: number[] = [];
    let full: ApiResponse | null = null;
    for (let i = 0; i < 200 && !full; i++) {
      const r = await createUser();
      statuses.push(r.status);
      if (r.status === 507) full = r;
      else expect(r.status, r.text).to.equal(201);
    }
    expect(full, `no 507 in ${statuses.length} writes on a full disk`).to.not.equal(null);
    expectInsufficientStorage(full!, d);
    const users = await d.container.database.db
      .selectFrom('users')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    // The platform admin, the user made below the threshold, and every 201 of the full disk.
    expect(Number(users.n)).to.equal(2 + statuses.filter((s) => s === 201).length);
    expect((await d.api.get('/health/ready')).status).to.equal(503);

    // Space back: ready and writable again, no restart.
    unlinkSync(filler);
    const back = await d.api.get('/health/ready');
    expect(back.status, back.text).to.equal(200);
    expect(back.body.checks).to.deep.equal({ database: 'ok', disk: 'ok' });
    const after = await createUser();
    expect(after.status, after.text).to.equal(201);
    expect(d.logs.join('')).to.not.include('unhandled error');
  });
});

(TEST_POSTGRES_URL || IN_CI ? describeRoot : describe.skip)(
  'a full Postgres tablespace [postgres, tmpfs]',
  function () {
    this.timeout(60_000);
    let fs: { dir: string; unmount(): void } | undefined;
    let schema: TestSchema;
    let admin: pg.Client;
    let d: TestDaemon;
    let root: string;
    const tablespace = `keen_t_full_${process.pid}`;

    before(async () => {
      if (!TEST_POSTGRES_URL) throw new Error('KEEN_TEST_POSTGRES_URL is not set');
      // A tablespace on a small tmpfs owned by the server's user: the users table lives there.
      fs = mountTmpfs(4);
      execFileSync('chown', ['postgres:postgres', fs.dir]);
      admin = new pg.Client({ connectionString: TEST_POSTGRES_URL });
      await admin.connect();
      await admin.query(`create tablespace ${tablespace} location '${fs.dir}'`);
      schema = await createTestSchema();
      d = await startDaemon({ backend: 'postgres', databaseUrl: schema.url });
      root = mintToken(d, await platformAdmin(d));
      await admin.query(`alter table ${schema.name}.users set tablespace ${tablespace}`);
      await admin.query(`create table ${schema.name}.test_filler (data text) tablespace ${tablespace}`);
    });
    after(async () => {
      await d?.stop();
      await schema?.drop();
      await admin?.query(`drop tablespace if exists ${tablespace}`).catch(() => undefined);
      await admin?.end();
      fs?.unmount();
    });

    it('a write answers 507 INSUFFICIENT_STORAGE (SQLSTATE 53100), and succeeds again once space is freed', async () => {
      // Fill the tablespace, 1 MB at a time, with rows stored as they are (no compression, no TOAST).
      await admin.query(`alter table ${schema.name}.test_filler alter column data set storage plain`);
      let filled: string | undefined;
      for (let i = 0; i < 100 && !filled; i++) {
        filled = await admin
          .query(
            `insert into ${schema.name}.test_filler select repeat(md5(random()::text), 64) from generate_series(1, 500)`,
          )
          .then(
            () => undefined,
            (err: { code?: string }) => err.code ?? 'no code',
          );
      }
      expect(filled).to.equal('53100');
      // The users table's last page may still hold a few rows; the first user that needs a new page is refused.
      const create = (email: string) => d.api.post('/v1/admin/users', { email, tier: 'individual' }, { token: root });
      let refusedEmail: string | null = null;
      for (let i = 0; i < 500 && !refusedEmail; i++) {
        const email = uniqueEmail('pgfull');
        const r = await create(email);
        if (r.status !== 201) {
          expectInsufficientStorage(r, d);
          refusedEmail = email;
        }
      }
      expect(refusedEmail, 'no 507 on a full tablespace').to.not.equal(null);
      expect(
        await d.container.database.db
          .selectFrom('users')
          .select('id')
          .where('email', '=', refusedEmail!)
          .executeTakeFirst(),
      ).to.equal(undefined);

      await admin.query(`drop table ${schema.name}.test_filler`);
      const created = await create(refusedEmail!);
      expect(created.status, created.text).to.equal(201);
    });
  },
);
