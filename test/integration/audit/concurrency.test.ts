import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { systemClock } from '../../../daemon/clock.js';
import { DatabaseAuditLogger } from '../../../daemon/audit/store.js';
import { verifyChain } from '../../../daemon/audit/verify.js';
import { Database } from '../../../daemon/storage/database.js';
import { describeStorage } from '../../helpers/backends.js';
import { AuditRepository } from '../../../daemon/storage/repos/audit.js';
import { openTestDatabase, type TestDatabase } from '../../helpers/database.js';
import { silent } from './support.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The append worker in its own process (a second daemon with its own connection), once it is ready. */
function startWorker(
  url: string,
  count: number,
  label: string,
): Promise<{ go(): void; done: Promise<void>; window: { started: number; done: number } }> {
  return new Promise((ready, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(here, 'fixtures/append-worker.ts'), url, String(count), label],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    const done = new Promise<void>((resolve, fail) =>
      child.on('exit', (code) =>
        code === 0 ? resolve() : fail(new Error(`worker ${label} exited ${code}: ${stderr}`)),
      ),
    );
    done.catch(reject);
    // When it started appending and when it finished, by its own clock (the same machine's).
    const window = { started: NaN, done: NaN };
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      for (const m of out.matchAll(/^(started|done) (\d+)$/gm)) window[m[1] as 'started' | 'done'] = Number(m[2]);
      if (d.toString().includes('ready')) ready({ go: () => child.stdin.end('go\n'), done, window });
    });
  });
}

describeStorage('audit log with several daemons', (backend) => {
  let t: TestDatabase;
  before(async () => {
    t = await openTestDatabase(backend);
  });
  after(async () => t?.close());

  it('keeps one chain, without gaps, when two daemons append 200 entries at once', async function () {
    this.timeout(120_000);
    const perDaemon = 100;
    if (backend === 'postgres') {
      // Two Database instances (two pools): two daemons on one Postgres, every append in flight at once.
      const other = new Database({
        url: t.home.databaseUrl,
        poolMax: 10,
        connectTimeoutMs: 5000,
        busyTimeoutMs: 5000,
        logger: silent,
      });
      try {
        const daemons = [t.database, other].map(
          (database) =>
            new DatabaseAuditLogger({
              database,
              audits: new AuditRepository(database),
              clock: systemClock,
              logger: silent,
            }),
        );
        await Promise.all(
          daemons.flatMap((audit, d) =>
            Array.from({ length: perDaemon }, (_, i) =>
              audit.record({
                action: 'session.execute',
                outcome: 'success',
                actor: { type: 'system', id: `daemon-${d}` },
                tenantId: null,
                details: { i },
              }),
            ),
          ),
        );
      } finally {
        await other.close();
      }
    } else {
      // Two processes on the same SQLite file, started together once both are ready: the BEGIN
      // IMMEDIATE write lock serializes their appends.
      const workers = await Promise.all([
        startWorker(t.home.databaseUrl, perDaemon, 'daemon-0'),
        startWorker(t.home.databaseUrl, perDaemon, 'daemon-1'),
      ]);
      for (const w of workers) w.go();
      await Promise.all(workers.map((w) => w.done));
      // Both were appending at the same time: each started before the other finished. (Under the
      // write lock one may still get every slot until it is done: the order on the chain proves
      // nothing on SQLite, the overlap of their attempts does.)
      const [w0, w1] = workers.map((w) => w.window);
      expect(w0!.started).to.be.below(w1!.done);
      expect(w1!.started).to.be.below(w0!.done);
    }
    const rows = await t.database.db
      .selectFrom('audit_log')
      .select(['seq', 'actor_id'])
      .orderBy('seq', 'asc')
      .execute();
    const seqs = rows.map((r) => Number(r.seq));
    // On Postgres (two pools in this process, every append in flight at once) the writer changes along the chain.
    const switches = rows.filter((r, i) => i > 0 && r.actor_id !== rows[i - 1]!.actor_id).length;
    if (backend === 'postgres') expect(switches).to.be.greaterThan(1);
    expect(seqs).to.deep.equal(Array.from({ length: 2 * perDaemon }, (_, i) => i + 1));
    const byDaemon = await t.database.db
      .selectFrom('audit_log')
      .select(['actor_id'])
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .groupBy('actor_id')
      .execute();
    expect(byDaemon.map((r) => [r.actor_id, Number(r.n)]).sort()).to.deep.equal([
      ['daemon-0', perDaemon],
      ['daemon-1', perDaemon],
    ]);
    const report = await verifyChain(t.database);
    expect(report).to.deep.include({ ok: true, entries: 2 * perDaemon, lastSeq: 2 * perDaemon });
  });
});
