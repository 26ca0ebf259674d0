import { expect } from 'chai';
import { rmSync } from 'node:fs';
import { IN_CI, TEST_POSTGRES_URL } from '../helpers/env.js';
import { makeHome, spawnDaemon, type ChildDaemon, type DaemonHome } from '../helpers/daemon.js';
import { prepareOutside } from '../helpers/outside.js';

(TEST_POSTGRES_URL || IN_CI ? describe : describe.skip)(
  'the last credit and a key budget, raced from two daemon processes on one Postgres [postgres]',
  () => {
    let homeA: DaemonHome;
    let homeB: DaemonHome;
    const daemons: ChildDaemon[] = [];
    after(async () => {
      for (const d of daemons) await d.cleanup();
      rmSync(homeB?.dataDir ?? '/nonexistent', { recursive: true, force: true });
      await homeA?.cleanup();
    });

    it('balance 50, 200 concurrent executes of 1 credit split across both: exactly 50 run, 150 get 402, the ledger verifies', async function () {
      this.timeout(120_000);
      if (!TEST_POSTGRES_URL) throw new Error('KEEN_TEST_POSTGRES_URL is not set');
      homeA = await makeHome({ backend: 'postgres' });
      homeB = await makeHome({ backend: 'postgres', databaseUrl: homeA.databaseUrl, jwtSecret: homeA.jwtSecret });
      const { database, ledger, user, token } = await prepareOutside(homeA, {
        label: 'race',
        tier: 'enterprise',
        micros: 50_000_000,
        scopes: ['agents:execute', 'sessions:read'],
      });
      // A silent agent that just waits: the race is about admission, not about what runs.
      // Correctness, not latency: 100 executes per daemon queue for its 10 connections, so allow a long wait for one.
      const config = {
        // Long enough that no session ends (and gives its hold back) while a race is on.
        agent: { command: ['sleep', '10'] },
        tiers: { enterprise: { max_concurrent_sessions: 1000, requests_per_hour: 100_000 } },
        database: { connect_timeout_ms: 60_000 },
      };
      daemons.push(await spawnDaemon({ backend: 'postgres', home: homeA, config }));
      daemons.push(await spawnDaemon({ backend: 'postgres', home: homeB, config }));
      try {
        const results = await Promise.all(
          Array.from({ length: 200 }, (_, i) =>
            daemons[i % 2]!.api.post(
              '/v1/agents/execute',
              { vision: `Race number ${i} for the last credit`, options: { costBudget: 1 } },
              { token },
            ),
          ),
        );
        const statuses = results.map((r) => r.status);
        expect(
          statuses.filter((s) => s === 200),
          JSON.stringify(results.find((r) => ![200, 402].includes(r.status))?.body ?? null),
        ).to.have.length(50);
        expect(statuses.filter((s) => s === 402)).to.have.length(150);
        // Exactly 50 holds of 1 credit were taken (some may have ended already on a slow machine).
        const holds = await database.db
          .selectFrom('credit_reservations')
          .select('amount')
          .where('user_id', '=', user.id)
          .execute();
        expect(holds.map((h) => Number(h.amount))).to.deep.equal(Array.from({ length: 50 }, () => 1_000_000));
        expect(await ledger.verify()).to.deep.equal([]);
        // Every session ends (the agent says nothing: failed, charged nothing) and releases its hold.
        for (let i = 0; i < 300; i++) {
          if ((await ledger.balance(user.id)).reserved === 0) break;
          await new Promise((r) => setTimeout(r, 200));
        }
        expect((await ledger.balance(user.id)).reserved).to.equal(0);
        expect(await ledger.verify()).to.deep.equal([]);

        // The same user's API key with a daily budget of 5 (the balance has room for 50):
        // 50 executes split across both daemons admit exactly 5.
        await ledger.grant({
          userId: user.id,
          amount: 100_000_000 as never,
          reason: 'budget race',
          actor: { type: 'system', id: null },
        });
        const created = await daemons[0]!.api.post(
          '/v1/api-keys',
          { name: 'budgeted', scopes: ['agents:execute'] },
          { token },
        );
        expect(created.status, created.text).to.equal(201);
        const capped = await daemons[1]!.api.put(
          `/v1/api-keys/${created.body.api_key.id}/budget`,
          { amount: 5, period: 'day' },
          { token },
        );
        expect(capped.status, capped.text).to.equal(200);
        const raced = await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            daemons[i % 2]!.api.post(
              '/v1/agents/execute',
              { vision: `Budget race ${i} across daemons`, options: { costBudget: 1 } },
              { apiKey: created.body.key },
            ),
          ),
        );
        expect(
          raced.filter((r) => r.status === 200),
          JSON.stringify(raced.find((r) => ![200, 402].includes(r.status))?.body ?? null),
        ).to.have.length(5);
        for (const r of raced.filter((x) => x.status !== 200)) expect(r.body.error.code).to.equal('BUDGET_EXCEEDED');
        expect(await ledger.verify()).to.deep.equal([]);
      } finally {
        await database.close();
      }
    });
  },
);
