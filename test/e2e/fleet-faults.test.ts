import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { describeStorage } from '../helpers/backends.js';
import { makeHome, spawnDaemon, type ChildDaemon, type DaemonHome } from '../helpers/daemon.js';
import { IN_CI, TEST_POSTGRES_URL } from '../helpers/env.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { descendantsOf, expectSessionsEndedClean } from '../helpers/fleet.js';
import { prepareOutside, type OutsideSetup } from '../helpers/outside.js';
import { createTestSchema, type TestSchema } from '../helpers/postgres.js';
import { waitForEnd } from '../helpers/sessions.js';
import { webhookReceiver } from '../helpers/webhooks.js';

const SCOPES = ['agents:execute', 'sessions:read', 'credits:read'] as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeStorage('faults: kill -9 in the middle of idempotent executes', (backend) => {
  let home: DaemonHome;
  let d: ChildDaemon | undefined;
  let outside: OutsideSetup;
  afterEach(async () => {
    await d?.cleanup();
    d = undefined;
    await outside?.database.close();
    await home?.cleanup();
  });

  it('every key runs exactly once: retries after the restart get the committed session or run it, never 409, never twice', async function () {
    this.timeout(120_000);
    home = await makeHome({ backend });
    outside = await prepareOutside(home, {
      label: 'idem-crash',
      tier: 'enterprise',
      micros: 500_000_000,
      scopes: [...SCOPES],
    });
    const { token, user, database } = outside;
    d = await spawnDaemon({ backend, home, config: { credits: { reservation_ttl_seconds: 60 } } });
    const keys = Array.from({ length: 16 }, () => randomUUID());
    const body = (i: number) => ({
      vision: `Idempotent job number ${i} [slow:40] [iterations:10]`,
      options: { costBudget: 2 },
    });
    const first = keys.map((key, i) =>
      d!.api.post('/v1/agents/execute', body(i), { token, headers: { 'Idempotency-Key': key } }).catch(() => null),
    );
    // Let some commit and others be in flight, then kill the daemon without warning.
    await Promise.race([first[0], sleep(400)]);
    await sleep(15);
    await d.kill('SIGKILL');
    const answered = await Promise.all(first);
    const committedBefore = new Map<string, string>();
    answered.forEach((r, i) => {
      if (r?.status === 200) committedBefore.set(keys[i]!, r.body.session.id);
    });

    d = await spawnDaemon({ backend, home, config: { credits: { reservation_ttl_seconds: 60 } } });
    const retries = await Promise.all(
      keys.map((key, i) => d!.api.post('/v1/agents/execute', body(i), { token, headers: { 'Idempotency-Key': key } })),
    );
    const idOf = new Map<string, string>();
    retries.forEach((r, i) => {
      expect(r.status, `retry of key ${i}: ${r.text}`).to.equal(200);
      idOf.set(keys[i]!, r.body.session.id);
      const before = committedBefore.get(keys[i]!);
      if (before) {
        expect(r.body.session.id, 'a committed execute is replayed').to.equal(before);
        expect(r.headers.get('idempotent-replayed')).to.equal('true');
      }
    });
    // A second round of retries replays every one of them.
    const again = await Promise.all(
      keys.map((key, i) => d!.api.post('/v1/agents/execute', body(i), { token, headers: { 'Idempotency-Key': key } })),
    );
    again.forEach((r, i) => {
      expect(r.status).to.equal(200);
      expect(r.headers.get('idempotent-replayed')).to.equal('true');
      expect(r.body.session.id).to.equal(idOf.get(keys[i]!));
    });
    const rows = await database.db.selectFrom('sessions').select('id').where('user_id', '=', user.id).execute();
    expect(rows.map((r) => r.id).sort(), 'one session per key, none twice').to.deep.equal(
      [...new Set(idOf.values())].sort(),
    );
    for (const id of idOf.values()) await waitForEnd(d, { token }, id, 60_000);
    await expectSessionsEndedClean(database, outside.ledger, [...idOf.values()]);
  });
});

describe('faults: a second daemon on the same data directory [sqlite]', () => {
  let home: DaemonHome;
  let d: ChildDaemon | undefined;
  let outside: OutsideSetup;
  after(async () => {
    await d?.cleanup();
    await outside?.database.close();
    await home?.cleanup();
  });

  it("refuses to start, names the process that holds it, and leaves the first one's sessions alone", async function () {
    this.timeout(60_000);
    home = await makeHome({ backend: 'sqlite' });
    outside = await prepareOutside(home, {
      label: 'two-daemons',
      tier: 'team',
      micros: 50_000_000,
      scopes: [...SCOPES],
    });
    d = await spawnDaemon({ home });
    const r = await d.api.post(
      '/v1/agents/execute',
      { vision: 'A job the second daemon must not touch [slow:100] [iterations:15]' },
      { token: outside.token },
    );
    expect(r.status, r.text).to.equal(200);
    let refusal = '';
    await spawnDaemon({ home }).then(
      async (second) => {
        await second.cleanup();
        throw new Error('a second daemon started on the same data directory');
      },
      (err: Error) => (refusal = err.message),
    );
    expect(refusal).to.match(/exited with 1/);
    expect(refusal).to.include(`another keen-gateway (pid ${d.child.pid}`);
    expect(refusal).to.include(home.dataDir);
    const end = await waitForEnd(d, { token: outside.token }, r.body.session.id, 30_000);
    expect(end.status, "the first daemon's session was not interrupted").to.equal('completed');
    // Once the first daemon is gone, the directory is free again (kill -9 leaves no stale lock).
    await d.kill('SIGKILL');
    d = await spawnDaemon({ home });
    expect((await d.api.get('/health/ready')).status).to.equal(200);
  });
});

describe('faults: agents of a daemon killed with kill -9, without the sandbox [sqlite]', () => {
  let home: DaemonHome;
  let d: ChildDaemon | undefined;
  let outside: OutsideSetup;
  after(async () => {
    await d?.cleanup();
    await outside?.database.close();
    await home?.cleanup();
  });

  it('die with the daemon (parent-death signal), and the restart ends their sessions', async function () {
    this.timeout(60_000);
    home = await makeHome({ backend: 'sqlite' });
    outside = await prepareOutside(home, { label: 'orphan', tier: 'team', micros: 50_000_000, scopes: [...SCOPES] });
    const config = { agent: { sandbox: { mode: 'none' } }, credits: { reservation_ttl_seconds: 60 } };
    d = await spawnDaemon({ home, config });
    const r = await d.api.post(
      '/v1/agents/execute',
      { vision: 'A quiet job that writes nothing for a while [slow:30000] [iterations:3]' },
      { token: outside.token },
    );
    expect(r.status, r.text).to.equal(200);
    const id = r.body.session.id as string;
    const record = path.join(home.dataDir, 'agents', `${id}.json`);
    for (let i = 0; i < 100 && !existsSync(record); i++) await sleep(50);
    const { pid } = JSON.parse(readFileSync(record, 'utf8')) as { pid: number };
    expect(existsSync(`/proc/${pid}`), 'the agent runs').to.equal(true);
    await d.kill('SIGKILL');
    let gone = false;
    for (let i = 0; i < 60 && !gone; i++) {
      gone = !existsSync(`/proc/${pid}`) || readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z');
      if (!gone) await sleep(50);
    }
    expect(gone, 'the agent died with its daemon').to.equal(true);
    d = await spawnDaemon({ home, config });
    const end = await waitForEnd(d, { token: outside.token }, id, 20_000);
    expect(end).to.include({ status: 'interrupted', end_reason: 'gateway_restart' });
    expect(existsSync(record), 'the record is cleared at restart').to.equal(false);
    await expectSessionsEndedClean(outside.database, outside.ledger, [id]);
  });
});

(TEST_POSTGRES_URL || IN_CI ? describe : describe.skip)(
  'faults: a daemon cut off from Postgres for longer than its lease [postgres]',
  () => {
    let schema: TestSchema;
    let proxy: FaultProxy;
    let homeA: DaemonHome;
    let homeB: DaemonHome;
    let a: ChildDaemon | undefined;
    let b: ChildDaemon | undefined;
    let outside: OutsideSetup;
    let hooks: Awaited<ReturnType<typeof webhookReceiver>>;
    after(async () => {
      await a?.cleanup();
      await b?.cleanup();
      await proxy?.close();
      await outside?.database.close();
      await hooks?.close();
      for (const h of [homeA, homeB]) if (h) rmSync(h.dataDir, { recursive: true, force: true });
      await schema?.drop();
    });

    it("stops its agents before the lease runs out; the other daemon's reaper ends each session once, with webhook and audit; late writes are refused", async function () {
      this.timeout(120_000);
      if (!TEST_POSTGRES_URL) throw new Error('KEEN_TEST_POSTGRES_URL is not set');
      schema = await createTestSchema();
      proxy = FaultProxy.for(TEST_POSTGRES_URL);
      await proxy.start();
      homeA = await makeHome({ backend: 'postgres', databaseUrl: proxy.url(schema.url) });
      homeB = await makeHome({ backend: 'postgres', databaseUrl: schema.url, jwtSecret: homeA.jwtSecret });
      outside = await prepareOutside(homeB, {
        label: 'partition',
        tier: 'team',
        micros: 100_000_000,
        scopes: [...SCOPES],
      });
      hooks = await webhookReceiver();
      const config = {
        credits: { reservation_ttl_seconds: 5, reaper_interval_seconds: 1 },
        database: { query_timeout_ms: 1500, connect_timeout_ms: 1000 },
      };
      a = await spawnDaemon({ backend: 'postgres', home: homeA, config });
      b = await spawnDaemon({ backend: 'postgres', home: homeB, config });
      const ids: string[] = [];
      for (let i = 0; i < 4; i++) {
        const r = await a.api.post(
          '/v1/agents/execute',
          {
            vision: `A long job on the daemon about to be cut off, number ${i} [slow:100] [iterations:400]`,
            options: { costBudget: 5 },
            webhook_url: hooks.url,
          },
          { token: outside.token },
        );
        expect(r.status, r.text).to.equal(200);
        ids.push(r.body.session.id);
      }
      // Every agent has reported some usage before the cut.
      for (const id of ids) {
        for (let i = 0; i < 100; i++) {
          const s = await b.api.get(`/v1/sessions/${id}`, { token: outside.token });
          if (s.body.session.cost_so_far > 0) break;
          await sleep(100);
        }
      }
      proxy.blackhole();
      const cutAt = Date.now();
      const ends = [];
      for (const id of ids) ends.push(await waitForEnd(b, { token: outside.token }, id, 60_000));
      const reapedAfter = Date.now() - cutAt;
      for (const end of ends) expect(end).to.include({ status: 'interrupted', end_reason: 'lease_expired' });
      // A killed every agent itself, before B could take the sessions: none runs unfenced.
      expect(descendantsOf(a.child.pid!), `agents still running ${reapedAfter} ms after the cut`).to.deep.equal([]);
      proxy.resume();
      // A learns its sessions were taken: its late writes (events, usage, settlement) are refused.
      let ready = false;
      for (let i = 0; i < 100 && !ready; i++) {
        ready = (await a.api.get('/health/ready')).status === 200;
        if (!ready) await sleep(100);
      }
      expect(ready, 'A is ready again after the partition').to.equal(true);
      await sleep(3000);
      expect(a.child.exitCode, 'A is still running').to.equal(null);
      await expectSessionsEndedClean(outside.database, outside.ledger, ids);
      // The webhooks of the reaped sessions were delivered (by either daemon).
      for (let i = 0; i < 100 && hooks.received.length < ids.length; i++) await sleep(100);
      const delivered = hooks.received.map((h) => JSON.parse(h.body) as { type: string; data: { id: string } });
      expect(delivered.map((h) => h.data.id).sort()).to.deep.equal([...ids].sort());
      expect(new Set(delivered.map((h) => h.type))).to.deep.equal(new Set(['session.interrupted']));
    });
  },
);
