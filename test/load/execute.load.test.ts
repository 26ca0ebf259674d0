import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describeStorage } from '../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { buildUser, type TestUser } from '../helpers/factories.js';
import { execute, expectLedgerClean, grant } from '../helpers/sessions.js';

const USERS = 4;
const PER_USER = 40;
const WAVES = 3;

/**
 * Executes and settlements of the same users at once, as under load: every
 * admission locks its user and account while earlier sessions of those users
 * settle (charge, events, audit) beside it. All must be admitted (no 500: on
 * Postgres a lock taken too strongly made the two deadlock), every session must
 * end, and the ledger must be exact. No timing assertion.
 */
describeStorage('load: executes of the same users while their earlier sessions settle', (backend) => {
  let d: TestDaemon;
  let users: TestUser[];
  let dir: string;

  before(async function () {
    this.timeout(60_000);
    dir = mkdtempSync(path.join(os.tmpdir(), 'keen-noop-agent-'));
    const agent = path.join(dir, 'noop.sh');
    // A shell agent that reports a small cost and ends at once: settlement starts right away.
    writeFileSync(
      agent,
      `#!/bin/sh\nread -r _line\nprintf '%s\\n' '{"type":"usage","input_tokens":100,"output_tokens":10,"web_searches":0}' '{"type":"result","status":"completed","summary":"ok"}'\n`,
      { mode: 0o755 },
    );
    d = await startDaemon({
      backend,
      logLevel: 'warn',
      config: {
        agent: { command: ['/bin/sh', agent] },
        tiers: { enterprise: { requests_per_hour: 1_000_000, max_concurrent_sessions: 10_000 } },
        // 160 executes at once queue for 10 Postgres connections; on a slow or busy machine the
        // default 5 s wait for a free one answers 503. This test is about correctness, not latency.
        database: { connect_timeout_ms: 60_000 },
      },
    });
    users = [];
    for (let i = 0; i < USERS; i++) {
      const u = await buildUser(d, { tier: 'enterprise' });
      await grant(d, u, 10_000);
      users.push(u);
    }
  });
  after(async () => {
    await d?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`admits ${USERS * PER_USER * WAVES} executes in ${WAVES} waves, every one 200; all settle with a clean ledger`, async function () {
    this.timeout(120_000);
    const ids: Array<{ user: TestUser; id: string }> = [];
    for (let wave = 0; wave < WAVES; wave++) {
      const results = await Promise.all(
        Array.from({ length: USERS * PER_USER }, async (_, i) => {
          const user = users[i % USERS]!;
          const r = await execute(d, user, `Load wave ${wave}: build a small todo app with tests`, {
            maxIterations: 1,
            costBudget: 0.5,
          });
          return { user, status: r.status, text: r.text, id: r.body?.session?.id as string | undefined };
        }),
      );
      const failed = results.filter((r) => r.status !== 200);
      expect(failed.map((r) => `${r.status} ${r.text}`).slice(0, 3), `wave ${wave}`).to.deep.equal([]);
      for (const r of results) ids.push({ user: r.user, id: r.id! });
    }
    // Every session ends and nothing stays reserved.
    const until = Date.now() + 90_000;
    for (;;) {
      const reserved = await Promise.all(
        users.map(async (u) => (await d.container.ledger.balance(u.user.id)).reserved),
      );
      if (reserved.every((r) => r === 0)) break;
      if (Date.now() > until) throw new Error(`credits still reserved: ${reserved.join(', ')}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const ended = await d.container.database.db
      .selectFrom('sessions')
      .select(['status'])
      .where(
        'id',
        'in',
        ids.map((s) => s.id),
      )
      .execute();
    expect(ended).to.have.length(ids.length);
    expect(new Set(ended.map((s) => s.status))).to.deep.equal(new Set(['completed']));
    await expectLedgerClean(d);
    expect(d.logs.join('').match(/deadlock|"level":"error"/g) ?? []).to.deep.equal([]);
  });
});
