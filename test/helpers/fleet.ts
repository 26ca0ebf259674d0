import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { processTree } from '../../daemon/agents/limit-watch.js';
import { verifyChain } from '../../daemon/audit/verify.js';
import type { CreditLedger } from '../../daemon/credits/ledger.js';
import { END_ACTION } from '../../daemon/sessions/supervisor.js';
import type { Database } from '../../daemon/storage/database.js';

/**
 * What must hold after any fault, for each session: it ended once, its final
 * status is its last event (events numbered 1..n without a gap), the
 * reservation was settled for exactly its final cost, and the end has its
 * audit entry and (when the session had a webhook URL) its webhook. Then the
 * ledger and the audit chain verify.
 */
export async function expectSessionsEndedClean(
  database: Database,
  ledger: CreditLedger,
  sessionIds: string[],
): Promise<void> {
  for (const id of sessionIds) {
    const s = await database.db.selectFrom('sessions').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    expect(s.status, `${id} ended`).not.to.equal('running');
    const events = await database.db
      .selectFrom('session_events')
      .select(['seq', 'type', 'data'])
      .where('session_id', '=', id)
      .orderBy('seq')
      .execute();
    expect(
      events.map((e) => Number(e.seq)),
      `${id}: events 1..n`,
    ).to.deep.equal(events.map((_, i) => i + 1));
    expect(Number(s.last_seq), `${id}: last_seq`).to.equal(events.length);
    const finals = events.filter((e) => e.type === 'session.status' && JSON.parse(e.data).status !== 'running');
    expect(finals, `${id}: one final status`).to.have.length(1);
    expect(finals[0], `${id}: nothing after the final status`).to.equal(events[events.length - 1]);
    expect(JSON.parse(finals[0]!.data).status).to.equal(s.status);
    const reservation = await database.db
      .selectFrom('credit_reservations')
      .selectAll()
      .where('id', '=', s.reservation_id)
      .executeTakeFirstOrThrow();
    expect(reservation.status, `${id}: reservation settled`).not.to.equal('open');
    expect(Number(reservation.charged), `${id}: charged its final cost`).to.equal(Number(s.final_cost));
    const audit = await database.db.selectFrom('audit_log').select('action').where('target_id', '=', id).execute();
    expect(
      audit.map((a) => a.action),
      `${id}: end audited`,
    ).to.include(END_ACTION[s.status]);
    if (s.webhook_url) {
      const hooks = await database.db
        .selectFrom('webhook_deliveries')
        .select('event_type')
        .where('session_id', '=', id)
        .execute();
      expect(
        hooks.map((h) => h.event_type),
        `${id}: end webhook`,
      ).to.deep.equal([`session.${s.status}`]);
    }
  }
  expect(await ledger.verify()).to.deep.equal([]);
  const chain = await verifyChain(database);
  expect(chain.ok, JSON.stringify(chain)).to.equal(true);
}

/** Sandboxes and example agents running on this machine (suites that use it run one daemon fleet at a time). */
export function agentProcesses(): string[] {
  try {
    return execFileSync('pgrep', ['-f', '^bwrap |examples/agent/agent.js'], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

/**
 * The processes a daemon process runs below it (its agents and their sandboxes),
 * as "pid command" lines. The test runner's own helper (tsx's esbuild service) is
 * not an agent and is left out.
 */
export function descendantsOf(pid: number): string[] {
  return processTree(pid)
    .filter((p) => p !== pid)
    .map((p) => {
      try {
        return `${p} ${readFileSync(`/proc/${p}/cmdline`, 'utf8').replaceAll('\0', ' ').trim()}`;
      } catch {
        return null;
      }
    })
    .filter((line): line is string => line !== null && !/\/esbuild /.test(line));
}

/** Waits (bounded) until no agent process is left, and returns what is left. */
export async function agentsLeft(timeoutMs = 3000): Promise<string[]> {
  let left = agentProcesses();
  for (const until = Date.now() + timeoutMs; left.length > 0 && Date.now() < until; left = agentProcesses()) {
    await new Promise((r) => setTimeout(r, 50));
  }
  return left;
}
