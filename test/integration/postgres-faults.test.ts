import { expect } from 'chai';
import { sql } from 'kysely';
import { isUnavailableError } from '../../daemon/storage/database.js';
import { IN_CI, TEST_POSTGRES_URL } from '../helpers/env.js';
import {
  makeHome,
  spawnDaemon,
  startDaemon,
  type ChildDaemon,
  type DaemonHome,
  type TestDaemon,
} from '../helpers/daemon.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import type { Api, ApiResponse } from '../helpers/http.js';
import { prepareOutside, type OutsideSetup } from '../helpers/outside.js';
import { createTestSchema, type TestSchema } from '../helpers/postgres.js';
import { buildUser } from '../helpers/factories.js';

/**
 * Network faults between a running daemon and Postgres (test/helpers/fault-proxy.ts):
 * links cut or reset while queries are in flight must never crash the process,
 * a partition must never hang a request, and both end by themselves when the
 * link comes back. Every failure a client sees is the documented 503
 * UNAVAILABLE with Retry-After, never a 500.
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the load saw: answers by kind, and every answer that is not 200 or the documented 503. */
interface Tally {
  ok: number;
  unavailable: number;
  wrong: string[];
}

function check(r: ApiResponse, tally: Tally, where: string): void {
  if (r.status === 200) {
    tally.ok++;
    return;
  }
  const envelope =
    r.status === 503 &&
    r.body?.success === false &&
    r.body?.error?.code === 'UNAVAILABLE' &&
    typeof r.body?.request_id === 'string';
  if (
    envelope &&
    r.headers.get('retry-after') === '1' &&
    !/postgres:\/\/|Connection terminated|timeout|select /i.test(r.text)
  )
    tally.unavailable++;
  else tally.wrong.push(`${where}: ${r.status} retry-after=${r.headers.get('retry-after')} ${r.text.slice(0, 300)}`);
}

/**
 * `workers` clients each asking for the balance (an authenticated read that
 * queries the database) in a loop until `stop()` is called; a refused or reset
 * connection to the daemon (a crashed process) counts as wrong.
 */
function load(targets: Array<{ name: string; api: Api }>, workers: number, tally: Tally): { stop(): Promise<void> } {
  let running = true;
  const loops: Array<Promise<void>> = [];
  for (let i = 0; i < workers; i++) {
    const target = targets[i % targets.length]!;
    loops.push(
      (async () => {
        while (running) {
          try {
            const r = await target.api.get('/v1/credits/balance');
            check(r, tally, target.name);
            if (r.status !== 200) await sleep(5);
          } catch (err) {
            tally.wrong.push(
              `${target.name}: request failed: ${(err as Error).message} ${String((err as Error).cause ?? '')}`,
            );
            await sleep(20);
          }
        }
      })(),
    );
  }
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** Polls `path` until it answers 200 (or `ms` pass); true when it did. */
async function answersOk(api: Api, path: string, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    try {
      if ((await api.get(path)).status === 200) return true;
    } catch {
      // not up yet
    }
    await sleep(100);
  }
  return false;
}

/** Tiers high enough that the load never meets a request limit. */
const UNLIMITED = { tiers: { individual: { requests_per_hour: 10_000_000 } } };

(TEST_POSTGRES_URL ? describe : IN_CI ? describe : describe.skip)(
  'Postgres link faults while the daemon serves [postgres]',
  function () {
    this.timeout(120_000);

    describe('links cut and reset under load', () => {
      let proxy: FaultProxy;
      let schema: TestSchema;
      let inProcess: TestDaemon;
      let inProcessApi: Api;
      let home: DaemonHome;
      let outside: OutsideSetup;
      let child: ChildDaemon;

      before(async () => {
        if (!TEST_POSTGRES_URL) throw new Error('KEEN_TEST_POSTGRES_URL is not set');
        proxy = FaultProxy.for(TEST_POSTGRES_URL);
        await proxy.start();
        // One daemon in this process (a crash is an uncaught exception: mocha fails) ...
        schema = await createTestSchema();
        inProcess = await startDaemon({
          databaseUrl: proxy.url(schema.url),
          config: { ...UNLIMITED, database: { pool_max: 10, connect_timeout_ms: 1000 } },
        });
        const u = await buildUser(inProcess);
        inProcessApi = inProcess.api.as({ token: u.token });
        // ... and the real executable as a child process, which must still be alive at the end.
        home = await makeHome({ backend: 'postgres' });
        outside = await prepareOutside(home, {
          label: 'faults',
          tier: 'individual',
          micros: 1_000_000,
          scopes: ['credits:read'],
        });
        child = await spawnDaemon({
          home: { ...home, databaseUrl: proxy.url(home.databaseUrl) },
          config: { ...UNLIMITED, database: { pool_max: 10, connect_timeout_ms: 1000 } },
        });
      });

      after(async () => {
        await child?.cleanup();
        await outside?.database.close();
        await home?.cleanup();
        await inProcess?.stop();
        await proxy?.close();
        await schema?.drop();
      });

      it('neither process crashes, every failure is 503 UNAVAILABLE, and both recover without a restart', async () => {
        const childApi = child.api.as({ token: outside.token });
        expect((await inProcessApi.get('/v1/credits/balance')).status).to.equal(200);
        expect((await childApi.get('/v1/credits/balance')).status).to.equal(200);

        const tally: Tally = { ok: 0, unavailable: 0, wrong: [] };
        const targets = [
          { name: 'in-process', api: inProcessApi },
          { name: 'child', api: childApi },
        ];
        const rounds = 10;
        for (let round = 0; round < rounds; round++) {
          const running = load(targets, 32, tally);
          // Let the load fill both pools, so the fault meets queries in flight on checked-out clients.
          await sleep(150);
          if (round % 2 === 0) proxy.cut();
          else proxy.reset();
          await sleep(200);
          proxy.resume();
          await sleep(150);
          await running.stop();
          expect(
            child.child.exitCode,
            `child daemon exited in round ${round}:\n${child.stderr.join('').slice(-3000)}`,
          ).to.equal(null);
        }

        expect(tally.wrong, 'answers other than 200 or 503 UNAVAILABLE with Retry-After').to.deep.equal([]);
        expect(tally.unavailable, 'the faults met requests in flight').to.be.greaterThan(0);

        // Postgres is back: both daemons answer again, with no restart.
        expect(await answersOk(inProcessApi, '/v1/credits/balance', 10_000), 'in-process daemon serves again').to.equal(
          true,
        );
        expect(await answersOk(childApi, '/v1/credits/balance', 10_000), 'child daemon serves again').to.equal(true);
        const after = await Promise.all(
          Array.from({ length: 30 }, (_, i) => (i % 2 ? childApi : inProcessApi).get('/v1/credits/balance')),
        );
        expect(after.map((r) => r.status)).to.deep.equal(after.map(() => 200));
        expect(child.child.exitCode).to.equal(null);
        expect((await child.api.get('/health/live')).status).to.equal(200);
        expect((await child.api.get('/health/ready')).status).to.equal(200);
        const logs = child.stdout.join('') + child.stderr.join('');
        expect(logs).not.to.match(/Unhandled 'error' event|uncaughtException/);
        expect(logs, 'no connection string in the logs').not.to.include(proxy.url(home.databaseUrl));
      });
    });

    describe('a partition (blackholed link)', () => {
      const QUERY_TIMEOUT_MS = 1500;
      const CONNECT_TIMEOUT_MS = 1000;
      let proxy: FaultProxy;
      let schema: TestSchema;
      let d: TestDaemon;
      let api: Api;

      before(async () => {
        if (!TEST_POSTGRES_URL) throw new Error('KEEN_TEST_POSTGRES_URL is not set');
        proxy = FaultProxy.for(TEST_POSTGRES_URL);
        await proxy.start();
        schema = await createTestSchema();
        d = await startDaemon({
          databaseUrl: proxy.url(schema.url),
          config: {
            ...UNLIMITED,
            database: {
              pool_max: 4,
              connect_timeout_ms: CONNECT_TIMEOUT_MS,
              query_timeout_ms: QUERY_TIMEOUT_MS,
              statement_timeout_ms: 1000,
            },
          },
        });
        const u = await buildUser(d);
        api = d.api.as({ token: u.token });
      });

      after(async () => {
        await d?.stop();
        await proxy?.close();
        await schema?.drop();
      });

      it('answers 503 within about query_timeout_ms instead of hanging, fails readiness, and recovers', async () => {
        // Warm the pool: its idle clients are on links the partition will swallow.
        await Promise.all(Array.from({ length: 8 }, () => api.get('/v1/credits/balance')));
        expect((await api.get('/health/ready')).status).to.equal(200);

        proxy.blackhole();
        const deadline = QUERY_TIMEOUT_MS + CONNECT_TIMEOUT_MS + 3000; // generous: a bound, not a measurement
        const started = Date.now();
        const answers = await Promise.all(
          Array.from({ length: 12 }, async () => {
            const r = await api.get('/v1/credits/balance');
            return { r, ms: Date.now() - started };
          }),
        );
        const tally: Tally = { ok: 0, unavailable: 0, wrong: [] };
        for (const { r } of answers) check(r, tally, 'partition');
        expect(tally.wrong).to.deep.equal([]);
        expect(tally.unavailable).to.equal(answers.length);
        for (const { ms } of answers) expect(ms, 'answered instead of hanging').to.be.below(deadline);

        const ready = await api.get('/health/ready');
        expect(ready.status).to.equal(503);
        expect(ready.body.error.code).to.equal('UNAVAILABLE');
        expect(ready.body.error.details.checks.database).to.equal('fail');
        expect((await api.get('/health/live')).status).to.equal(200);

        proxy.resume();
        expect(await answersOk(api, '/health/ready', 15_000), 'ready again after the partition healed').to.equal(true);
        expect(await answersOk(api, '/v1/credits/balance', 15_000), 'serves again after the partition healed').to.equal(
          true,
        );
        const after = await Promise.all(Array.from({ length: 12 }, () => api.get('/v1/credits/balance')));
        expect(after.map((r) => r.status)).to.deep.equal(after.map(() => 200));
        expect(d.logs.join(''), 'no connection string in the logs').not.to.include(proxy.url(schema.url));
      });

      it('fails a transaction whose link goes silent once, without waiting again for its rollback', async () => {
        const database = d.container.database;
        const started = Date.now();
        let failure: unknown = null;
        try {
          await database.transaction(async (trx) => {
            await sql`select 1`.execute(trx);
            proxy.blackhole();
            await sql`select 2`.execute(trx);
          });
        } catch (err) {
          failure = err;
        } finally {
          proxy.resume();
        }
        const ms = Date.now() - started;
        expect(isUnavailableError(failure), String(failure)).to.equal(true);
        // The timed-out connection fails the rollback at once instead of queueing it behind the
        // unanswered query (which would take a second query_timeout_ms).
        expect(ms).to.be.below(2 * QUERY_TIMEOUT_MS);
        expect((await sql<{ x: number }>`select 3 as x`.execute(database.db)).rows).to.deep.equal([{ x: 3 }]);
      });
    });
  },
);
