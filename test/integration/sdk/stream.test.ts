import { expect } from 'chai';
import WebSocket from 'ws';
import {
  AuthenticationError,
  NotFoundError,
  type StreamEvent,
  type WebSocketConstructor,
} from '../../../sdk/src/index.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildApiKey, buildUser, type TestUser } from '../../helpers/factories.js';
import { grant, waitForEnd } from '../../helpers/sessions.js';
import { CuttableProxy, sdk } from './support.js';

const storedEvents = async (d: TestDaemon, u: TestUser, id: string) =>
  (await d.api.get(`/v1/sessions/${id}/events?limit=1000`, { token: u.token })).body.events as StreamEvent[];

/** Only the WHATWG surface of `ws` (no `.on`): how Node 22's global WebSocket looks to the SDK. */
class WhatwgWebSocket {
  private readonly ws: WebSocket;
  constructor(url: string, init?: { headers?: Record<string, string> }) {
    this.ws = new WebSocket(url, init ?? {});
  }
  get readyState() {
    return this.ws.readyState;
  }
  send(data: string) {
    this.ws.send(data);
  }
  close(code?: number, reason?: string) {
    this.ws.close(code, reason);
  }
  addEventListener(type: string, listener: (event: any) => void) {
    this.ws.addEventListener(type as 'message', listener);
  }
}

describe('SDK stream (GET /v1/stream)', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon();
  });
  after(async () => d?.stop());

  async function runner(tier: 'team' | 'enterprise' = 'team') {
    const u = await buildUser(d, { tier });
    await grant(d, u, 50);
    return { u, client: sdk(d, { apiKey: (await buildApiKey(d, u)).key }) };
  }

  it('streams a whole run: every stored event once, in order, typed, ending with the final status', async () => {
    const { u, client } = await runner();
    const run = await client.execute({
      vision: 'Build a small todo application [slow:30] [iterations:4]',
      options: { costBudget: 5 },
    });
    const seen: StreamEvent[] = [];
    const phases: string[] = [];
    for await (const e of client.stream(run.session.id)) {
      seen.push(e);
      if (e.type === 'agent.phase') phases.push(e.data.phase);
    }
    const last = seen.at(-1)!;
    expect(last.type).to.equal('session.status');
    expect(last.data).to.include({ status: 'completed' });
    expect(seen.map((e) => e.seq)).to.deep.equal(seen.map((_, i) => i + 1));
    expect(seen).to.deep.equal(await storedEvents(d, u, run.session.id));
    expect(phases).to.include('EXPLORE');
    for (const t of ['agent.progress', 'cost.update']) expect(seen.map((e) => e.type)).to.include(t);
  });

  it('resumes after server-side disconnects with no gap and no duplicate', async () => {
    const { u } = await runner();
    const proxy = await new CuttableProxy(d).up();
    try {
      const client = sdk(proxy.url, { accessToken: u.token });
      const run = await client.execute({
        vision: 'Take your time with this [slow:60] [iterations:30]',
        options: { costBudget: 10 },
      });
      const seqs: number[] = [];
      let cuts = 0;
      for await (const e of client.stream(run.session.id)) {
        seqs.push(e.seq);
        // Twice, mid-run, the connection drops under the client.
        if ((seqs.length === 5 || seqs.length === 25) && cuts < 2) {
          cuts += 1;
          proxy.cut();
        }
      }
      expect(cuts).to.equal(2);
      const stored = await storedEvents(d, u, run.session.id);
      expect(seqs).to.deep.equal(stored.map((e) => e.seq));
      expect(seqs).to.deep.equal(seqs.map((_, i) => i + 1));
      expect(stored.at(-1)!.data).to.include({ status: 'completed' });
    } finally {
      await proxy.down();
    }
  });

  it('replays from `after`; a session already over past `after` ends at once', async () => {
    const { u, client } = await runner();
    const run = await client.execute({ vision: 'Build a small todo application', options: { costBudget: 2 } });
    await waitForEnd(d, u, run.session.id);
    const stored = await storedEvents(d, u, run.session.id);
    const lastSeq = stored.at(-1)!.seq;
    const tail: number[] = [];
    for await (const e of client.stream(run.session.id, { after: lastSeq - 2 })) tail.push(e.seq);
    expect(tail).to.deep.equal([lastSeq - 1, lastSeq]);
    const none: number[] = [];
    for await (const e of client.stream(run.session.id, { after: lastSeq })) none.push(e.seq);
    expect(none).to.deep.equal([]);
  });

  it('stops quietly when its AbortSignal aborts', async () => {
    const { client } = await runner();
    const run = await client.execute({
      vision: 'Take your time with this [slow:200] [iterations:50]',
      options: { costBudget: 10 },
    });
    const ac = new AbortController();
    const seen: StreamEvent[] = [];
    const started = Date.now();
    for await (const e of client.stream(run.session.id, { signal: ac.signal })) {
      seen.push(e);
      if (seen.length === 3) ac.abort();
    }
    expect(seen).to.have.length(3);
    expect(Date.now() - started).to.be.below(5000);
    await client.sessions.cancel(run.session.id);
  });

  it('works with a WHATWG-only WebSocket class (the global one of Node 22)', async () => {
    const { u } = await runner();
    const client = sdk(d, { accessToken: u.token }, { WebSocket: WhatwgWebSocket as unknown as WebSocketConstructor });
    const run = await client.execute({
      vision: 'Build a small todo application [iterations:2]',
      options: { costBudget: 2 },
    });
    const seqs: number[] = [];
    for await (const e of client.stream(run.session.id)) seqs.push(e.seq);
    expect(seqs).to.deep.equal((await storedEvents(d, u, run.session.id)).map((e) => e.seq));
  });

  it("refuses another user's session (NotFoundError) and a bad credential at the upgrade (AuthenticationError)", async () => {
    const { client } = await runner();
    const run = await client.execute({ vision: 'A session that belongs to its owner', options: { costBudget: 1 } });
    const stranger = sdk(d, { accessToken: (await buildUser(d)).token });
    const notFound = await (async () => {
      for await (const _ of stranger.stream(run.session.id)) return null;
      return null;
    })().catch((e: unknown) => e);
    expect(notFound).to.be.instanceOf(NotFoundError);

    const bad = sdk(d, { apiKey: 'ak_live_not-a-real-key' });
    const refused = await (async () => {
      for await (const _ of bad.streamAll()) return null;
      return null;
    })().catch((e: unknown) => e);
    expect(refused).to.be.instanceOf(AuthenticationError);
    expect(refused).to.include({ status: 401 });
  });

  it('on Node, opens with `ws` even beside a global WebSocket: a refused upgrade is thrown, not retried', async () => {
    // Node 22+ has a global WebSocket (undici's): there a refused upgrade is an `error` event without the status,
    // which the stream would retry as a network failure for a minute. A WHATWG-only global stands in for it.
    const g = globalThis as { WebSocket?: unknown };
    const had = Object.getOwnPropertyDescriptor(g, 'WebSocket');
    let opened = 0;
    class GlobalWebSocket extends WhatwgWebSocket {
      constructor(url: string, init?: { headers?: Record<string, string> }) {
        super(url, init);
        opened += 1;
      }
    }
    Object.defineProperty(g, 'WebSocket', { value: GlobalWebSocket, configurable: true, writable: true });
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 5000);
    try {
      const bad = sdk(d, { apiKey: 'ak_live_not-a-real-key' });
      const started = Date.now();
      const refused = await (async () => {
        for await (const _ of bad.streamAll({ signal: ac.signal })) return null;
        return null;
      })().catch((e: unknown) => e);
      expect(refused).to.be.instanceOf(AuthenticationError);
      expect(refused).to.include({ status: 401 });
      expect(opened).to.equal(0);
      expect(Date.now() - started).to.be.below(5000);
    } finally {
      clearTimeout(timer);
      if (had) Object.defineProperty(g, 'WebSocket', had);
      else delete g.WebSocket;
    }
  });

  it('streamAll: the running sessions of the user, each in order, until aborted', async () => {
    const { u, client } = await runner('enterprise');
    const slow = { vision: 'Take your time with this [slow:80] [iterations:8]', options: { costBudget: 5 } };
    const a = await client.execute(slow);
    const b = await client.execute(slow);
    const ac = new AbortController();
    const bySession = new Map<string, number[]>();
    const ended = new Set<string>();
    for await (const e of client.streamAll({ signal: ac.signal })) {
      bySession.set(e.session_id, [...(bySession.get(e.session_id) ?? []), e.seq]);
      if (e.type === 'session.status' && e.data.status !== 'running') ended.add(e.session_id);
      if (ended.size === 2) ac.abort();
    }
    expect([...bySession.keys()].sort()).to.deep.equal([a.session.id, b.session.id].sort());
    for (const id of [a.session.id, b.session.id]) {
      const seqs = bySession.get(id)!;
      const stored = (await storedEvents(d, u, id)).map((e) => e.seq);
      // Live from the moment of subscribing: a contiguous tail of the stored events, through the final one.
      expect(seqs).to.deep.equal(stored.slice(stored.length - seqs.length));
      expect(seqs.length).to.be.greaterThan(1);
    }
  });

  it('streamAll: a session started after the stream opened arrives whole, from seq 1', async () => {
    const { u, client } = await runner('enterprise');
    const ac = new AbortController();
    const bySession = new Map<string, number[]>();
    let target: string | null = null;
    const started = (async () => {
      await new Promise((r) => setTimeout(r, 300));
      target = (
        await client.execute({
          vision: 'Started once the stream is open [slow:50] [iterations:3]',
          options: { costBudget: 2 },
        })
      ).session.id;
    })();
    for await (const e of client.streamAll({ signal: ac.signal })) {
      // Its first events may arrive before execute has answered with its id.
      bySession.set(e.session_id, [...(bySession.get(e.session_id) ?? []), e.seq]);
      if (e.type === 'session.status' && e.data.status !== 'running' && e.session_id === target) ac.abort();
    }
    await started;
    const seen = bySession.get(target!) ?? [];
    const stored = (await storedEvents(d, u, target!)).map((e) => e.seq);
    expect(seen).to.deep.equal(stored);
    expect(seen[0]).to.equal(1);
  });
});
