import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { systemClock } from '../../../daemon/clock.js';
import { DatabaseAuditLogger } from '../../../daemon/audit/store.js';
import { verifyChain } from '../../../daemon/audit/verify.js';
import { Database } from '../../../daemon/storage/database.js';
import { describeStorage } from '../../helpers/backends.js';
import { openTestDatabase, type TestDatabase } from '../../helpers/database.js';
import { silent } from './support.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Runs the append worker in its own process: a second daemon with its own connection. */
function runWorker(url: string, count: number, label: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'fixtures/append-worker.ts'), url, String(count), label], {
      stdio: ['ignore', 'inherit', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker ${label} exited ${code}: ${stderr}`))));
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
      const other = new Database({ url: t.home.databaseUrl, poolMax: 10, connectTimeoutMs: 5000, busyTimeoutMs: 5000, logger: silent });
      try {
        const daemons = [t.database, other].map((database) => new DatabaseAuditLogger({ database, clock: systemClock, logger: silent }));
        await Promise.all(
          daemons.flatMap((audit, d) =>
            Array.from({ length: perDaemon }, (_, i) =>
              audit.record({ action: 'session.execute', outcome: 'success', actor: { type: 'system', id: `daemon-${d}` }, tenantId: null, details: { i } }),
            ),
          ),
        );
      } finally {
        await other.close();
      }
    } else {
      // Two processes on the same SQLite file: the BEGIN IMMEDIATE write lock serializes them.
      await Promise.all([runWorker(t.home.databaseUrl, perDaemon, 'daemon-0'), runWorker(t.home.databaseUrl, perDaemon, 'daemon-1')]);
    }
    const rows = await t.database.db.selectFrom('audit_log').select(['seq', 'actor_id']).orderBy('seq', 'asc').execute();
    const seqs = rows.map((r) => Number(r.seq));
    // The two really ran at the same time: the writer changes along the chain. (The SQLite workers'
    // start-up time varies, so only the in-process Postgres run is certain to interleave.)
    const switches = rows.filter((r, i) => i > 0 && r.actor_id !== rows[i - 1]!.actor_id).length;
    if (backend === 'postgres') expect(switches).to.be.greaterThan(1);
    expect(seqs).to.deep.equal(Array.from({ length: 2 * perDaemon }, (_, i) => i + 1));
    const byDaemon = await t.database.db.selectFrom('audit_log').select(['actor_id']).select((eb) => eb.fn.countAll<number>().as('n')).groupBy('actor_id').execute();
    expect(byDaemon.map((r) => [r.actor_id, Number(r.n)]).sort()).to.deep.equal([
      ['daemon-0', perDaemon],
      ['daemon-1', perDaemon],
    ]);
    const report = await verifyChain(t.database);
    expect(report).to.deep.include({ ok: true, entries: 2 * perDaemon, lastSeq: 2 * perDaemon });
  });
});
