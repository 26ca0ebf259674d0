import { expect } from 'chai';
import { rowToRecord } from '../../../daemon/audit/entry.js';
import { ManualClock } from '../../../daemon/clock.js';
import type { AuditEvent } from '../../../daemon/audit/types.js';
import type { AuditEntry } from '../../../schemas/types.gen.js';
import {
  AuthenticationError,
  AuthorizationError,
  ConnectionError,
  KeenClient,
  KeenError,
  TimeoutError,
  type AuditHeartbeat,
  type FetchLike,
  type TokenPair,
} from '../../../sdk/src/index.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildApiKey, buildUser } from '../../helpers/factories.js';
import { scriptedServer, sdk, sleep } from './support.js';

// Made-up actions (`live.one`, ...) exercise the filters; the store takes any string.
const event = (action: string, details: Record<string, unknown> = {}): AuditEvent => ({
  action: action as AuditEvent['action'],
  outcome: 'success',
  actor: { type: 'user', id: 'usr_sdk_audit' },
  tenantId: null,
  target: null,
  details,
});

/** The error the first `next()` of `it` rejects with (fails the test when it yields or ends). */
async function firstError(it: AsyncIterator<unknown>): Promise<unknown> {
  const outcome = await it.next().then(
    (v) => ({ v }),
    (e: unknown) => ({ e }),
  );
  if (!('e' in outcome)) throw new Error(`expected a rejection, got ${JSON.stringify(outcome.v)}`);
  return outcome.e;
}

describe('SDK audit JSON Lines (client.audit, client.requestLines)', () => {
  let d: TestDaemon;
  let adminKey: string;
  let memberKey: string;
  const subscribers = () => (d.container.auditStore as unknown as { subscribers: Set<unknown> }).subscribers.size;

  before(async () => {
    d = await startDaemon();
    adminKey = (await buildApiKey(d, await buildUser(d, { role: 'admin', tier: 'enterprise' }))).key;
    memberKey = (await buildApiKey(d, await buildUser(d))).key;
  });
  after(async () => d?.stop());

  it('export yields every matching entry once, oldest first, as stored, across pages and chunks', async function () {
    this.timeout(60_000);
    const action = `sdkexport${Date.now().toString(36)}`;
    // More than one export page (500 rows) and many TCP chunks, so lines are split across reads.
    for (let i = 0; i < 520; i++)
      await d.container.auditStore.record(
        event(`${action}.write`, { i, note: 'x'.repeat(i % 50), nested: { list: [i, `é ${i} \u2028`] } }),
      );
    const client = sdk(d, { apiKey: adminKey });

    const got: AuditEntry[] = [];
    for await (const e of client.audit.export<AuditEntry>({ action: `${action}.*` })) got.push(e);

    const rows = await d.container.database.db
      .selectFrom('audit_log')
      .selectAll()
      .where('action', '=', `${action}.write`)
      .orderBy('seq', 'asc')
      .execute();
    expect(got).to.have.length(520);
    expect(got).to.deep.equal(rows.map(rowToRecord));
    expect(got.map((e) => (e.details as { i: number }).i)).to.deep.equal([...Array(520).keys()]);

    // Each entry re-serialized is the line the gateway sent (what `keen-admin audit export` prints).
    const raw = await fetch(`${d.url}/v1/admin/audit/export?action=${action}.*`, {
      headers: { authorization: `ApiKey ${adminKey}` },
    });
    expect(got.map((e) => `${JSON.stringify(e)}\n`).join('')).to.equal(await raw.text());
  });

  it('stream yields the opening heartbeat, then entries as they commit, and stops on abort', async () => {
    const action = `sdkstream${Date.now().toString(36)}`;
    const client = sdk(d, { apiKey: adminKey });
    const ac = new AbortController();
    const it = client.audit.stream<AuditEntry>({ action: `${action}.*` }, { signal: ac.signal });

    const first = await it.next();
    expect(first.done).to.equal(false);
    const head = await d.container.auditStore.head();
    expect(first.value).to.deep.equal({ type: 'heartbeat', after_seq: head.seq } satisfies AuditHeartbeat);
    expect(subscribers()).to.equal(1);

    await d.container.auditStore.record(event('sdkother.write'));
    for (let n = 1; n <= 3; n++) await d.container.auditStore.record(event(`${action}.write`, { n }));
    const entries: AuditEntry[] = [];
    while (entries.length < 3) {
      const r = await it.next();
      expect(r.done).to.equal(false);
      const item = r.value!;
      if ('type' in item && item.type === 'heartbeat') continue;
      entries.push(item as AuditEntry);
    }
    expect(entries.map((e) => e.details)).to.deep.equal([{ n: 1 }, { n: 2 }, { n: 3 }]);
    expect(entries.every((e) => e.action === `${action}.write` && e.seq > head.seq)).to.equal(true);

    // Abort while a next() waits: it rejects with the signal's reason, the iteration is over and the connection closed.
    const pending = it.next();
    await sleep(50);
    ac.abort();
    const err = await pending.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).to.equal(ac.signal.reason);
    expect((err as Error).name).to.equal('AbortError');
    expect(await it.next()).to.deep.equal({ done: true, value: undefined });
    for (let i = 0; i < 50 && subscribers() > 0; i++) await sleep(20);
    expect(subscribers()).to.equal(0);
  });

  it('an already aborted signal rejects the first next() without a request; break closes the connection', async () => {
    let calls = 0;
    const counting: FetchLike = (url, init) => ((calls += 1), fetch(url, init));
    const client = sdk(d, { apiKey: adminKey }, { fetch: counting });
    const ac = new AbortController();
    ac.abort();
    const err = await firstError(client.audit.stream({}, { signal: ac.signal }));
    expect(err).to.equal(ac.signal.reason);
    expect(calls).to.equal(0);

    for await (const item of client.audit.stream()) {
      expect(item).to.include({ type: 'heartbeat' });
      expect(subscribers()).to.equal(1);
      break;
    }
    for (let i = 0; i < 50 && subscribers() > 0; i++) await sleep(20);
    expect(subscribers()).to.equal(0);
  });

  it('a bad key is an AuthenticationError with the documented code, as the gateway answered it', async () => {
    const bad = sdk(d, { apiKey: 'ak_live_not-a-real-key' });
    const answer = await fetch(`${d.url}/v1/admin/audit/export`, {
      headers: { authorization: 'ApiKey ak_live_not-a-real-key' },
    });
    const envelope = (await answer.json()) as { error: { type: string; code: string } };
    expect(answer.status).to.equal(401);
    expect(envelope.error).to.include({ type: 'AUTHENTICATION_ERROR', code: 'INVALID_TOKEN' });

    for (const it of [
      bad.audit.export({ since: '2020-01-01T00:00:00Z' }),
      bad.audit.stream(),
      bad.requestLines('/v1/admin/audit/export'),
    ]) {
      const err = await firstError(it);
      expect(err).to.be.instanceOf(AuthenticationError);
      expect(err).to.include({ type: 'AUTHENTICATION_ERROR', code: 'INVALID_TOKEN', status: 401 });
      expect((err as KeenError).requestId).to.match(/^req_/);
    }
  });

  it('a key without the admin scope is an AuthorizationError; a bad filter a 400 before any line', async () => {
    const err = await firstError(sdk(d, { apiKey: memberKey }).audit.export());
    expect(err).to.be.instanceOf(AuthorizationError);
    expect(err).to.include({ status: 403 });
    const invalid = await firstError(sdk(d, { apiKey: adminKey }).audit.export({ since: 'not a time' }));
    expect(invalid).to.be.instanceOf(KeenError);
    expect(invalid).to.include({ type: 'VALIDATION_ERROR', code: 'INVALID_FIELD', status: 400 });
  });

  it('sends the headers of every other request, asking for JSON Lines', async () => {
    const seen: Array<Record<string, string>> = [];
    const recording: FetchLike = (url, init) => (
      seen.push({ ...(init.headers as Record<string, string>) }), fetch(url, init)
    );
    const client = sdk(d, { apiKey: adminKey }, { fetch: recording });
    await client.me();
    for await (const _ of client.audit.export({ action: 'nothing.here' })) expect.fail('no entry expected');
    expect(seen).to.have.length(2);
    expect(seen[1]).to.deep.equal({ ...seen[0], accept: 'application/x-ndjson' });
    expect(seen[1]).to.include({ authorization: `ApiKey ${adminKey}` });
  });

  describe('transport failures', () => {
    it('no response within the timeout: TimeoutError; the timeout does not bound a body that keeps coming', async () => {
      const server = await scriptedServer((req, res) => {
        if (req.url === '/silent') return; // never answers
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        let n = 0;
        const timer = setInterval(() => {
          res.write(`{"n":${++n}}\n`);
          if (n === 5) clearInterval(timer), res.end();
        }, 100);
      });
      try {
        const client = sdk(server.url, { apiKey: adminKey }, { timeout: 200 });
        const started = Date.now();
        const timedOut = await firstError(client.requestLines('/silent'));
        expect(timedOut).to.be.instanceOf(TimeoutError);
        expect(timedOut).to.include({ code: 'TIMEOUT', status: null });
        expect(Date.now() - started).to.be.lessThan(2000);

        const got: unknown[] = [];
        for await (const e of client.requestLines('/slow')) got.push(e);
        expect(got).to.deep.equal([1, 2, 3, 4, 5].map((n) => ({ n })));
      } finally {
        await server.close();
      }
    });

    it('a body that breaks off: the lines before it, then ConnectionError STREAM_LOST', async () => {
      const server = await scriptedServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        res.write('{"seq":1}\n{"seq":2}\n{"se');
        setTimeout(() => res.socket?.destroy(), 50);
      });
      try {
        const got: unknown[] = [];
        const lost = await (async () => {
          try {
            for await (const e of sdk(server.url, { apiKey: adminKey }).audit.export()) got.push(e);
          } catch (e) {
            return e;
          }
          return null;
        })();
        expect(got).to.deep.equal([{ seq: 1 }, { seq: 2 }]);
        expect(lost).to.be.instanceOf(ConnectionError);
        expect(lost).to.include({ code: 'STREAM_LOST', status: null });
      } finally {
        await server.close();
      }
    });

    it('a line that is not JSON is a KeenError INVALID_RESPONSE', async () => {
      const server = await scriptedServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/x-ndjson', 'x-request-id': 'req_scripted' });
        res.end('{"seq":1}\n<html>\n');
      });
      try {
        const it = sdk(server.url, { apiKey: adminKey }).audit.export();
        expect(await it.next()).to.deep.equal({ done: false, value: { seq: 1 } });
        const err = await firstError(it);
        expect(err).to.be.instanceOf(KeenError);
        expect(err).to.include({ code: 'INVALID_RESPONSE', requestId: 'req_scripted' });
      } finally {
        await server.close();
      }
    });
  });
});

describe('SDK audit JSON Lines with an expired access token', () => {
  let d: TestDaemon;
  const clock = new ManualClock(Date.now());
  before(async () => {
    d = await startDaemon({ clock });
  });
  after(async () => d?.stop());

  it('refreshes it once and reads the export', async () => {
    const admin = await buildUser(d, { role: 'admin', tier: 'enterprise', withPassword: true });
    const login = await d.api.post('/v1/auth/login', { email: admin.email, password: admin.password });
    expect(login.status, login.text).to.equal(200);
    const tokens = login.body.tokens as TokenPair;
    const paths: string[] = [];
    const rotated: TokenPair[] = [];
    const client = new KeenClient({
      baseUrl: d.url,
      accessToken: tokens.access_token,
      refreshToken: tokens.refresh_token,
      onTokens: (t) => void rotated.push(t),
      fetch: (url, init) => (paths.push(new URL(url).pathname), fetch(url, init)),
    });
    clock.advance(16 * 60_000);
    const got: AuditEntry[] = [];
    for await (const e of client.audit.export({ action: 'auth.login' })) got.push(e);
    expect(got.map((e) => e.actor_id)).to.include(admin.user.id);
    expect(paths).to.deep.equal(['/v1/admin/audit/export', '/v1/auth/refresh', '/v1/admin/audit/export']);
    expect(rotated).to.have.length(1);
  });
});
