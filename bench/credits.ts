/**
 * `node --import tsx bench/credits.ts`: reservations per second through the
 * CreditLedger service (reserve + settle pairs, each its own transaction, the
 * account row locked each time), at a fixed concurrency, on SQLite and on
 * Postgres (when KEEN_TEST_POSTGRES_URL is set). Bounded in time; prints a
 * Markdown table.
 *
 * Two cases per backend: every worker on one account (the worst case: all pairs
 * serialize on that account's lock) and one account per worker (only the
 * database's own limits apply).
 */
import { DatabaseAuditLogger } from '../daemon/audit/store.js';
import { AuditRepository } from '../daemon/storage/repos/audit.js';
import { MemoryAuditLogger } from '../daemon/audit/types.js';
import { systemClock } from '../daemon/clock.js';
import { CreditLedger } from '../daemon/credits/ledger.js';
import { creditRepositories } from '../daemon/storage/repos/credits.js';
import { createLogger } from '../daemon/logger.js';
import { credits, toMicros } from '../daemon/credits/money.js';
import { Metrics } from '../daemon/metrics.js';
import type { StorageBackend } from '../test/helpers/backends.js';
import { openTestDatabase } from '../test/helpers/database.js';
import { TEST_POSTGRES_URL } from '../test/helpers/env.js';
import { insertTestUser } from '../test/helpers/users.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
/** `database` (default): the hash-chained audit store, as the daemon runs. `memory`: no audit writes, to see what the chain costs. */
const AUDIT = process.env.BENCH_AUDIT === 'memory' ? 'memory' : 'database';

interface Result {
  backend: StorageBackend;
  accounts: string;
  pairs: number;
  p50: number;
  p99: number;
  errors: number;
  clean: boolean;
}

async function run(backend: StorageBackend, sharedAccount: boolean): Promise<Result> {
  // One connection per worker on Postgres, so the pool is not the bottleneck.
  const tdb = await openTestDatabase(backend, { poolMax: CONCURRENCY });
  // The daemon's own audit store: each operation appends to the hash chain in its transaction, as in production.
  const audit =
    AUDIT === 'memory'
      ? Object.assign(new MemoryAuditLogger(), { close: async () => undefined })
      : new DatabaseAuditLogger({
          database: tdb.database,
          audits: new AuditRepository(tdb.database),
          clock: systemClock,
          logger: createLogger('silent'),
        });
  try {
    const ledger = new CreditLedger({
      database: tdb.database,
      repositories: creditRepositories(tdb.database),
      clock: systemClock,
      audit,
      metrics: new Metrics({ defaultMetrics: false }),
    });
    const actor = { type: 'system' as const, id: null };
    // Plain user rows, inserted directly as the credits tests do (the credit tables reference users).
    const insertUser = async () => (await insertTestUser(tdb.database)).id;
    const users = sharedAccount
      ? [await insertUser()]
      : await Promise.all(Array.from({ length: CONCURRENCY }, () => insertUser()));
    for (const userId of users) await ledger.grant({ userId, amount: credits(1_000_000), reason: 'bench', actor });

    const latencies: number[] = [];
    let errors = 0;
    const end = Date.now() + SECONDS * 1000;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async (_, worker) => {
        const userId = users[worker % users.length]!;
        while (Date.now() < end) {
          const t = process.hrtime.bigint();
          try {
            const r = await ledger.reserve({ userId, amount: credits(1), ttlMs: 60_000, actor });
            await ledger.settle(r.id, toMicros(250_000), { actor });
            latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
          } catch {
            errors++;
          }
        }
      }),
    );
    latencies.sort((a, b) => a - b);
    const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0;
    const clean = (await ledger.verify()).length === 0;
    return {
      backend,
      accounts: sharedAccount ? '1 shared' : `${CONCURRENCY} (one per worker)`,
      pairs: latencies.length,
      p50: q(0.5),
      p99: q(0.99),
      errors,
      clean,
    };
  } finally {
    await audit.close();
    await tdb.close();
  }
}

const backends: StorageBackend[] = TEST_POSTGRES_URL ? ['sqlite', 'postgres'] : ['sqlite'];
const results: Result[] = [];
for (const backend of backends) {
  for (const shared of [true, false]) results.push(await run(backend, shared));
}
console.log(
  `\nreserve + settle pairs through CreditLedger, concurrency ${CONCURRENCY}, ${SECONDS} s per case, audit: ${AUDIT}, node ${process.version}\n`,
);
console.log('| backend | accounts | reservations/s | p50 ms (pair) | p99 ms (pair) | errors | verify |');
console.log('|---|---|---|---|---|---|---|');
for (const r of results) {
  console.log(
    `| ${r.backend} | ${r.accounts} | ${(r.pairs / SECONDS).toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.errors} | ${r.clean ? 'clean' : 'MISMATCH'} |`,
  );
}
if (!TEST_POSTGRES_URL) console.log('\nPostgres skipped: set KEEN_TEST_POSTGRES_URL to include it.');
