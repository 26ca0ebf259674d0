import { expect } from 'chai';
import { describeShared } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildUser } from '../../helpers/factories.js';
import { execute, grant } from '../../helpers/sessions.js';
import { closeClients, connect } from './support.js';

describeShared('a stream connection without a sessions filter', (shared) => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon({ shared });
  });
  after(async () => d?.stop());
  afterEach(() => closeClients());

  it("carries every session of its user started after it connected, whole, and nobody else's", async () => {
    const u = await buildUser(d, { tier: 'team' });
    const other = await buildUser(d, { tier: 'team' });
    await grant(d, u, 5);
    await grant(d, other, 5);
    const client = await connect(d, { token: u.token });
    const mine = (await execute(d, u, 'A run to follow without naming it [slow:100]', { costBudget: 1 })).body.session
      .id;
    const theirs = (await execute(d, other, 'Somebody else entirely [slow:100]', { costBudget: 1 })).body.session.id;
    await client.untilEnd(mine);
    const events = client.events(mine);
    expect(events.length).to.be.greaterThan(3);
    // From its first event on: every seq once, in order.
    const seqs = events.map((e) => e.seq);
    expect(seqs, JSON.stringify(events.map((e) => [e.seq, e.type]))).to.deep.equal(seqs.map((_, i) => i + 1));
    expect(events[events.length - 1]!.data).to.include({ status: 'completed' });
    await d.container.supervisor.settled(theirs);
    expect(client.events(theirs)).to.deep.equal([]);
    expect(client.messages.every((m) => m.session_id === undefined || m.session_id === mine)).to.equal(true);
  });

  it('a subscribe for a session it already follows changes nothing: no error, no duplicate, no gap', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 5);
    const client = await connect(d, { token: u.token });
    const id = (await execute(d, u, 'Follow then resubscribe [slow:150] [iterations:6]', { costBudget: 1 })).body
      .session.id;
    await client.until((m) => m.some((x) => x.session_id === id && x.seq >= 3), 15_000, 'a few events');
    client.send({ type: 'subscribe', session_id: id, after: 0 });
    await client.untilEnd(id);
    const seqs = client.events(id).map((e) => e.seq);
    expect(client.errors()).to.deep.equal([]);
    expect(seqs).to.deep.equal(seqs.map((_, i) => i + 1));
  });
});
