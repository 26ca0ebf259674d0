import { expect } from 'chai';
import { sql } from 'kysely';
import type { Database } from '../../daemon/storage/database.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { IN_CI, TEST_POSTGRES_URL } from '../helpers/env.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { buildApiKey, buildUser, platformAdmin, mintToken, type TestUser } from '../helpers/factories.js';
import { grant } from '../helpers/sessions.js';

/**
 * Two daemons on one Postgres keep the caller's user, API key and balance rows in memory
 * (Database.prepareRead); a write on one must drop them on the other (daemon/storage/invalidation.ts).
 * Each check waits for B to hear the write (its notification counter moves) and then asserts B's very
 * next request: no wall-clock race. The time from A's answer to B hearing it is measured and bounded.
 */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** What the invalidation may take from A's answer to B hearing it: 100 ms, with slack for a loaded 2-core machine. */
const HEARD_WITHIN_MS = 250;

const state = (d: TestDaemon) => d.container.database.cacheState!;

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<number> {
  const start = performance.now();
  while (!(await cond())) {
    if (performance.now() - start > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(2);
  }
  return performance.now() - start;
}

/** Waits until `d` has applied a notification after `since`; the ms it took. */
const heard = (d: TestDaemon, since: number) =>
  waitFor('the write announced', () => state(d).notifications > since, 2000);

(TEST_POSTGRES_URL || IN_CI ? describe : describe.skip)(
  'kept rows across two daemons on one Postgres [postgres]',
  () => {
    let a: TestDaemon;
    let b: TestDaemon;
    let admin: string;
    const measured: Record<string, number[]> = {};
    const note = (name: string, ms: number) => (measured[name] ??= []).push(Math.round(ms * 10) / 10);

    before(async function () {
      this.timeout(60_000);
      if (!TEST_POSTGRES_URL) throw new Error('KEEN_TEST_POSTGRES_URL is not set');
      a = await startDaemon({ backend: 'postgres', logLevel: 'warn' });
      b = await startDaemon({
        backend: 'postgres',
        databaseUrl: a.home.databaseUrl,
        jwtSecret: a.home.jwtSecret,
        logLevel: 'warn',
      });
      admin = mintToken(a, await platformAdmin(a));
      await waitFor('both listeners connected', () => state(a).serving && state(b).serving);
    });
    after(async () => {
      if (Object.keys(measured).length > 0)
        console.log(`      invalidation heard by B after A's answer (ms): ${JSON.stringify(measured)}`);
      await b?.stop();
      await a?.stop();
    });

    /** Reads the balance on `d` twice: the second read is served from what `d` keeps. */
    async function warm(d: TestDaemon, creds: { token?: string; apiKey?: string }): Promise<void> {
      for (let i = 0; i < 2; i++) {
        const r = await d.api.get('/v1/credits/balance', creds);
        expect(r.status, r.text).to.equal(200);
      }
    }

    it('an API key revoked on A is refused on B at its next request', async () => {
      const u = await buildUser(a);
      const key = await buildApiKey(a, u);
      await warm(b, { apiKey: key.key });
      const since = state(b).notifications;
      const revoked = await a.api.delete(`/v1/api-keys/${key.id}`, { token: u.token });
      expect(revoked.status, revoked.text).to.equal(200);
      note('key revocation', await heard(b, since));
      const r = await b.api.get('/v1/credits/balance', { apiKey: key.key });
      expect(r.status, r.text).to.equal(401);
      expect(r.body.error.code).to.equal('API_KEY_REVOKED');
      expect(Math.max(...measured['key revocation']!)).to.be.below(HEARD_WITHIN_MS);
    });

    it('a user suspended on A is refused on B, by access token and by API key', async () => {
      const u: TestUser = await buildUser(a);
      const key = await buildApiKey(a, u);
      await warm(b, { token: u.token });
      await warm(b, { apiKey: key.key });
      const since = state(b).notifications;
      const suspended = await a.api.post(`/v1/admin/users/${u.user.id}/suspend`, {}, { token: admin });
      expect(suspended.status, suspended.text).to.equal(200);
      note('suspension', await heard(b, since));
      // A suspension also ends the user's sign-ins: the token is refused as invalid, the key as suspended.
      for (const [creds, code] of [
        [{ token: u.token }, 'INVALID_TOKEN'],
        [{ apiKey: key.key }, 'ACCOUNT_SUSPENDED'],
      ] as const) {
        const r = await b.api.get('/v1/credits/balance', creds);
        expect(r.status, r.text).to.equal(401);
        expect(r.body.error.code).to.equal(code);
      }
      expect(Math.max(...measured.suspension!)).to.be.below(HEARD_WITHIN_MS);
    });

    it('a grant on A shows in the balance B answers', async () => {
      const u = await buildUser(a);
      await grant(a, u, 1);
      await warm(b, { token: u.token });
      const since = state(b).notifications;
      await grant(a, u, 2);
      note('grant', await heard(b, since));
      const r = await b.api.get('/v1/credits/balance', { token: u.token });
      expect(r.status, r.text).to.equal(200);
      expect(r.body.balance).to.equal(3);
    });

    it('a listener whose connection is killed serves nothing kept until it is back, then drops everything', async () => {
      const u = await buildUser(a);
      const key = await buildApiKey(a, u);
      await warm(b, { apiKey: key.key });
      const losses = state(b).losses;
      const pid = (b.container.database as unknown as { listener: { client: { processID: number } } }).listener.client
        .processID;
      await sql`select pg_terminate_backend(${pid})`.execute(a.container.database.db);
      await waitFor('B notices', () => state(b).losses > losses);
      // Revoked while B hears nothing: B reads the row again rather than serve what it kept.
      const revoked = await a.api.delete(`/v1/api-keys/${key.id}`, { token: u.token });
      expect(revoked.status, revoked.text).to.equal(200);
      const r = await b.api.get('/v1/credits/balance', { apiKey: key.key });
      expect(r.status, r.text).to.equal(401);
      await waitFor('B listens again', () => state(b).serving);
    });
  },
);

(TEST_POSTGRES_URL || IN_CI ? describe : describe.skip)(
  'a daemon cut off from Postgres serves no kept row [postgres]',
  () => {
    let a: TestDaemon;
    let b: TestDaemon;
    let proxy: FaultProxy;

    before(async function () {
      this.timeout(60_000);
      if (!TEST_POSTGRES_URL) throw new Error('KEEN_TEST_POSTGRES_URL is not set');
      proxy = FaultProxy.for(TEST_POSTGRES_URL);
      await proxy.start();
      a = await startDaemon({ backend: 'postgres', logLevel: 'error' });
      b = await startDaemon({
        backend: 'postgres',
        databaseUrl: proxy.url(a.home.databaseUrl),
        jwtSecret: a.home.jwtSecret,
        logLevel: 'error',
        config: { database: { connect_timeout_ms: 1000, query_timeout_ms: 2000 } },
      });
      await waitFor('both listeners connected', () => state(a).serving && state(b).serving);
    });
    after(async () => {
      await b?.stop();
      await a?.stop();
      await proxy?.close();
    });

    it('cut: a key revoked meanwhile is never accepted by B; after resume B refuses it and keeps rows again', async () => {
      const u = await buildUser(a);
      const key = await buildApiKey(a, u);
      const other = await buildApiKey(a, u);
      await waitFor(
        'B keeps rows',
        async () => (await b.api.get('/v1/credits/balance', { apiKey: key.key })).status === 200,
      );
      proxy.cut();
      await waitFor('B stops serving kept rows', () => !state(b).serving);
      const revoked = await a.api.delete(`/v1/api-keys/${key.id}`, { token: u.token });
      expect(revoked.status, revoked.text).to.equal(200);
      // B cannot reach Postgres: it answers an error, never the kept row's 200.
      const during = await b.api.get('/v1/credits/balance', { apiKey: key.key });
      expect(during.status, during.text).not.to.equal(200);
      proxy.resume();
      await waitFor('B listens again', () => state(b).serving, 10_000);
      const after = await b.api.get('/v1/credits/balance', { apiKey: key.key });
      expect(after.status, after.text).to.equal(401);
      expect(after.body.error.code).to.equal('API_KEY_REVOKED');
      // The cache is back: the other key's row is kept again (its next write on A is what drops it).
      await warm(other.key);
      const db: Database = b.container.database;
      expect(db.cacheState!.serving).to.equal(true);
    });

    async function warm(apiKey: string): Promise<void> {
      for (let i = 0; i < 2; i++) {
        const r = await b.api.get('/v1/credits/balance', { apiKey });
        expect(r.status, r.text).to.equal(200);
      }
    }
  },
);
