/**
 * Fencing of a session's lease: once another daemon has ended a session (its
 * reaper found the lease run out), the daemon that ran it must kill the agent
 * and write nothing more. Two real daemons on one store; the other daemon's
 * reaper pass is run directly, with the session's lease made to look expired.
 */
import { expect } from 'chai';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildUser } from '../../helpers/factories.js';
import { descendantsOf, expectSessionsEndedClean } from '../../helpers/fleet.js';
import { execute, grant, waitForEnd } from '../../helpers/sessions.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeStorage('sessions: a lease taken over by another daemon', (backend) => {
  let owner: TestDaemon;
  let other: TestDaemon;
  before(async () => {
    owner = await startDaemon({ backend, config: { credits: { reservation_ttl_seconds: 6 } } });
    other = await startDaemon({
      databaseUrl: owner.home.databaseUrl,
      jwtSecret: owner.home.jwtSecret,
      config: { credits: { reservation_ttl_seconds: 6 } },
    });
  });
  after(async () => {
    await other?.stop();
    await owner?.stop();
  });

  it('the old owner kills its agent at once and none of its late writes land: one final status, last, charged once', async function () {
    this.timeout(30_000);
    const u = await buildUser(owner, { tier: 'team' });
    await grant(owner, u, 20);
    const r = await execute(owner, u, 'A long job about to be taken over [slow:100] [iterations:300]', {
      costBudget: 5,
    });
    expect(r.status, r.text).to.equal(200);
    const id = r.body.session.id as string;
    for (let i = 0; i < 100; i++) {
      const s = await owner.api.get(`/v1/sessions/${id}`, { token: u.token });
      if (s.body.session.cost_so_far > 0) break;
      await sleep(50);
    }
    expect(descendantsOf(process.pid).length, 'the agent runs').to.be.greaterThan(0);
    // The other daemon's reaper: the lease looks run out to it (as after a partition of the owner).
    const row = await other.container.database.db
      .selectFrom('sessions')
      .select('reservation_id')
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    await other.container.database.db
      .updateTable('credit_reservations')
      .set({ expires_at: 1 })
      .where('id', '=', row.reservation_id)
      .execute();
    const supervisor = other.container.supervisor;
    const reaped = await other.container.ledger.reapExpired(Date.now(), {
      usedMicros: (res, trx) => supervisor.usedByExpired(res, trx),
    });
    expect(reaped).to.equal(1);
    const end = await waitForEnd(other, u, id);
    expect(end).to.include({ status: 'interrupted', end_reason: 'lease_expired' });
    // Within a heartbeat (a third of the lease) the owner finds the lease gone and kills the agent.
    let left = descendantsOf(process.pid);
    for (let i = 0; i < 80 && left.length > 0; i++) {
      await sleep(50);
      left = descendantsOf(process.pid);
    }
    expect(left, 'the old owner killed its agent').to.deep.equal([]);
    await sleep(500);
    await expectSessionsEndedClean(owner.container.database, owner.container.ledger, [id]);
    expect(owner.logs.join('')).to.include('the session was ended elsewhere (lease lost)');
  });
});
