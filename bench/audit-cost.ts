/**
 * The cost of the audit entry on the execute path: executes accepted per second
 * with the hash-chained audit store, and with audit entries dropped, in the same
 * run (in-process daemons, loopback, bounded). `node --import tsx bench/audit-cost.ts`
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AuditLogger } from '../daemon/audit/types.js';
import { startDaemon } from '../test/helpers/daemon.js';
import { buildUser } from '../test/helpers/factories.js';
import { grant } from '../test/helpers/sessions.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONCURRENCY = 16;
const dropAll: AuditLogger = { record: async () => undefined };

function noopAgent(): string[] {
  const dir = mkdtempSync(path.join(tmpdir(), 'keen-bench-agent-'));
  const file = path.join(dir, 'noop-agent.sh');
  writeFileSync(
    file,
    `#!/bin/sh\nread -r _line\nprintf '%s\\n' '{"type":"result","status":"completed","summary":"bench"}'\n`,
    { mode: 0o755 },
  );
  return ['/bin/sh', file];
}

async function measure(backend: 'sqlite' | 'postgres', audit: 'chained' | 'none') {
  const d = await startDaemon({
    backend,
    logLevel: 'warn',
    ...(audit === 'none' ? { audit: dropAll } : {}),
    config: {
      agent: { command: noopAgent() },
      tiers: { enterprise: { max_concurrent_sessions: 100_000, requests_per_hour: 10_000_000 } },
    },
  });
  try {
    const users = await Promise.all(Array.from({ length: CONCURRENCY }, () => buildUser(d, { tier: 'enterprise' })));
    for (const u of users) await grant(d, u, 1_000_000);
    let accepted = 0;
    let other = 0;
    const end = Date.now() + SECONDS * 1000;
    await Promise.all(
      users.map(async (u) => {
        while (Date.now() < end) {
          const r = await d.api.post(
            '/v1/agents/execute',
            { vision: 'A benchmark run that does nothing', options: { costBudget: 0.1 } },
            { token: u.token },
          );
          if (r.status === 200) accepted++;
          else other++;
        }
      }),
    );
    return { backend, audit, perSecond: accepted / SECONDS, other };
  } finally {
    await d.stop();
  }
}

const rows = [];
const backends: Array<'sqlite' | 'postgres'> = process.env.KEEN_TEST_POSTGRES_URL ? ['sqlite', 'postgres'] : ['sqlite'];
for (const backend of backends) {
  // Interleaved, so drift in machine load hits both alike.
  for (const audit of ['chained', 'none', 'chained', 'none'] as const) rows.push(await measure(backend, audit));
}
console.log(
  `\nexecutes accepted per second, ${CONCURRENCY} users in parallel, ${SECONDS} s per case, no-op agent, node ${process.version}\n`,
);
console.log('| backend | audit | executes/s | non-200 |');
console.log('|---|---|---:|---:|');
for (const r of rows) console.log(`| ${r.backend} | ${r.audit} | ${r.perSecond.toFixed(1)} | ${r.other} |`);
