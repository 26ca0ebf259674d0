import { expect } from 'chai';
import { describeShared } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildUser } from '../../helpers/factories.js';
import { execute, grant, waitForEnd } from '../../helpers/sessions.js';
import { closeClients, connect, expectComplete, metric, seedSession } from './support.js';

describeShared('stream: delivery and resume', (shared) => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon({ shared, config: { credits: { reservation_ttl_seconds: 30 } } });
  });
  afterEach(() => closeClients());
  after(async () => d?.stop());

  it('greets, then delivers every event of a run once, in seq order, ending with the final session.status', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 20);
    const r = await execute(d, u, 'Build a small stream demo [slow:100] [iterations:4]', { costBudget: 3 });
    expect(r.status, r.text).to.equal(200);
    const id = r.body.session.id as string;
    const c = await connect(d, { token: u.token, query: `sessions=${id}&after=0` });
    expect(c.messages[0]).to.have.property('type', 'connection_established');
    expect(c.messages[0]!.data.connection_id).to.match(/^con_[0-9a-z]{26}$/);
    await c.untilEnd(id);
    const events = c.events(id);
    expect(expectComplete(events)).to.deep.equal([]);
    // Exactly as stored.
    const stored = await d.api.get(`/v1/sessions/${id}/events`, { token: u.token });
    expect(events).to.deep.equal(stored.body.events);
    for (const e of events) expect(Object.keys(e)).to.deep.equal(['type', 'session_id', 'seq', 'ts', 'data']);
    expect(c.errors()).to.deep.equal([]);
    expect(await metric(d, 'keen_stream_messages_sent_total', { kind: 'event' })).to.be.at.least(events.length);
  });

  it('subscribe with after replays what is stored, then goes live: no gap, no duplicate', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 20);
    const r = await execute(d, u, 'Take some time to finish [slow:150] [iterations:6]', { costBudget: 3 });
    const id = r.body.session.id as string;
    const c = await connect(d, { token: u.token });
    // Let a few events be stored first, so both the replay and the live path carry some.
    await new Promise((res) => setTimeout(res, 400));
    c.send({ type: 'subscribe', session_id: id, after: 0 });
    await c.untilEnd(id);
    expect(expectComplete(c.events(id))).to.deep.equal([]);
  });

  it('disconnect mid-run, reconnect with after = last seq: the union is every event exactly once', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 20);
    const r = await execute(d, u, 'A run long enough to reconnect into [slow:200] [iterations:8]', { costBudget: 3 });
    const id = r.body.session.id as string;
    const first = await connect(d, { token: u.token, query: `sessions=${id}&after=0` });
    await first.until((m) => m.filter((x) => x.session_id === id).length >= 4, 15_000, 'a few events');
    first.close();
    await first.closed;
    const got = first.events(id);
    const last = got[got.length - 1]!.seq;
    const second = await connect(d, { token: u.token });
    second.send({ type: 'subscribe', session_id: id, after: last });
    await second.untilEnd(id);
    const union = [...got, ...second.events(id)];
    expect(expectComplete(union)).to.deep.equal([]);
    expect(second.events(id)[0]!.seq).to.equal(last + 1);
  });

  it('subscribes to several sessions on one connection and follows each to its end', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 20);
    const a = (await execute(d, u, 'First of two parallel runs [slow:50] [iterations:3]', { costBudget: 2 })).body
      .session.id as string;
    const b = (await execute(d, u, 'Second of two parallel runs [slow:50] [iterations:3]', { costBudget: 2 })).body
      .session.id as string;
    const c = await connect(d, { token: u.token, query: `sessions=${a},${b}&after=0` });
    await c.untilEnd(a);
    await c.untilEnd(b);
    expect(expectComplete(c.events(a))).to.deep.equal([]);
    expect(expectComplete(c.events(b))).to.deep.equal([]);
  });

  it('replays a long stored history page by page, in order', async () => {
    const u = await buildUser(d);
    const id = await seedSession(d, u, 1234);
    const c = await connect(d, { token: u.token });
    c.send({ type: 'subscribe', session_id: id, after: 100 });
    await c.untilEnd(id);
    const events = c.events(id);
    expect(events.map((e) => e.seq)).to.deep.equal(Array.from({ length: 1134 }, (_, i) => 101 + i));
    expect(await metric(d, 'keen_stream_replay_events')).to.be.at.least(1134);
  });

  it('without after: a running session streams from now on; an ended one sends its final status only', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 20);
    const ended = await seedSession(d, u, 12);
    // A sessions filter: the connection follows what it names and subscribes to, not every new session.
    const c = await connect(d, { token: u.token, query: `sessions=${ended}` });
    await c.untilEnd(ended);
    expect(c.events(ended).map((e) => e.seq)).to.deep.equal([12]);

    const r = await execute(d, u, 'Something to watch live [slow:300] [iterations:4]', { costBudget: 2 });
    const id = r.body.session.id as string;
    await new Promise((res) => setTimeout(res, 500));
    c.send({ type: 'subscribe', session_id: id });
    await c.untilEnd(id);
    const live = c.events(id);
    expect(live[0]!.seq).to.be.greaterThan(1);
    live.forEach((e, i) => expect(e.seq).to.equal(live[0]!.seq + i));
    const end = await waitForEnd(d, u, id);
    expect(live[live.length - 1]!.seq).to.equal(end.last_seq);
  });

  it('after a session ends nothing more is sent for it, and unsubscribe stops a live subscription', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 20);
    const r = await execute(d, u, 'Slow enough to unsubscribe from [slow:300] [iterations:6]', { costBudget: 2 });
    const id = r.body.session.id as string;
    const c = await connect(d, { token: u.token, query: `sessions=${id}&after=0` });
    await c.until((m) => m.some((x) => x.session_id === id), 10_000, 'a first event');
    c.send({ type: 'unsubscribe', session_id: id });
    await new Promise((res) => setTimeout(res, 300));
    const seen = c.events(id).length;
    await waitForEnd(d, u, id);
    await new Promise((res) => setTimeout(res, 300));
    expect(c.events(id).length).to.equal(seen);
    // Subscribing again resumes where it stopped.
    c.send({ type: 'subscribe', session_id: id, after: c.events(id)[seen - 1]!.seq });
    await c.untilEnd(id);
    expect(expectComplete(c.events(id))).to.deep.equal([]);
  });

  it('answers invalid messages with an error and keeps the connection', async () => {
    const u = await buildUser(d);
    const c = await connect(d, { token: u.token });
    c.send('not json');
    c.send([1, 2]);
    c.send({ type: 'dance' });
    c.send({ type: 'subscribe' });
    c.send({ type: 'subscribe', session_id: 'ses_x', after: -1 });
    c.send({ type: 'subscribe', session_id: 'ses_x', extra: true });
    c.ws.send(Buffer.from('{"type":"subscribe"}'), { binary: true });
    await c.until((m) => m.filter((x) => x.type === 'error').length >= 7, 5_000, 'seven errors');
    expect(c.errors().map((e) => e.error.code)).to.deep.equal([
      'INVALID_JSON',
      'INVALID_FIELD',
      'INVALID_FIELD',
      'INVALID_FIELD',
      'INVALID_FIELD',
      'INVALID_FIELD',
      'INVALID_JSON',
    ]);
    for (const e of c.errors()) expect(e.error.message).to.be.a('string');
    const id = await seedSession(d, u, 3);
    c.send({ type: 'subscribe', session_id: id, after: 0 });
    await c.untilEnd(id);
    expect(c.ws.readyState).to.equal(c.ws.OPEN);
  });

  it('closes every client with 1001 on shutdown', async () => {
    const d2 = await startDaemon({ shared });
    try {
      const u = await buildUser(d2);
      const clients = await Promise.all([1, 2, 3].map(() => connect(d2, { token: u.token })));
      expect(await metric(d2, 'keen_stream_connections')).to.equal(3);
      await d2.stop();
      for (const c of clients) expect((await c.closedWithin(5_000)).code).to.equal(1001);
    } finally {
      await d2.stop();
    }
  });
});
