import { expect } from 'chai';
import net from 'node:net';
import {
  AuthenticationError,
  AuthorizationError,
  ConflictError,
  ConnectionError,
  InsufficientCreditsError,
  KeenError,
  NotFoundError,
  RateLimitError,
  ServerError,
  TimeoutError,
  ValidationError,
  type FetchLike,
} from '../../../sdk/src/index.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildApiKey, buildUser } from '../../helpers/factories.js';
import { grant } from '../../helpers/sessions.js';
import { closedPort, envelope, scriptedServer, sdk } from './support.js';

/** The error a promise rejects with (fails the test when it resolves). */
async function rejection(p: Promise<unknown>): Promise<KeenError> {
  const outcome = await p.then(
    (v) => ({ v }),
    (e: unknown) => ({ e }),
  );
  if (!('e' in outcome)) throw new Error(`expected a rejection, got ${JSON.stringify(outcome.v)}`);
  expect(outcome.e).to.be.instanceOf(KeenError);
  return outcome.e as KeenError;
}

describe('SDK errors from their real triggers', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon();
  });
  after(async () => d?.stop());

  it('401 bad key: AuthenticationError with the request id', async () => {
    const err = await rejection(sdk(d, { apiKey: 'ak_live_not-a-real-key' }).me());
    expect(err).to.be.instanceOf(AuthenticationError);
    expect(err).to.include({ type: 'AUTHENTICATION_ERROR', status: 401 });
    expect(err.requestId).to.match(/^req_/);
  });

  it('403 missing scope: AuthorizationError INSUFFICIENT_SCOPE', async () => {
    const u = await buildUser(d);
    const readOnly = sdk(d, { apiKey: (await buildApiKey(d, u, { scopes: ['sessions:read'] })).key });
    const err = await rejection(readOnly.execute({ vision: 'Build a small todo application' }));
    expect(err).to.be.instanceOf(AuthorizationError);
    expect(err).to.include({ code: 'INSUFFICIENT_SCOPE', status: 403 });
  });

  it('400 invalid body: ValidationError listing the fields, not retried', async () => {
    const u = await buildUser(d);
    let calls = 0;
    const counting: FetchLike = (url, init) => ((calls += 1), fetch(url, init));
    const err = await rejection(sdk(d, { accessToken: u.token }, { fetch: counting }).execute({ vision: 'short' }));
    expect(err).to.be.instanceOf(ValidationError);
    expect(err).to.include({ code: 'INVALID_FIELD', status: 400 });
    expect(err.details).to.be.an('array').that.is.not.empty;
    expect(calls).to.equal(1);
  });

  it('402 without credits: InsufficientCreditsError with required, available and shortfall', async () => {
    const u = await buildUser(d);
    await grant(d, u, 0.5);
    const err = await rejection(
      sdk(d, { accessToken: u.token }).execute({
        vision: 'Build a small todo application',
        options: { costBudget: 2 },
      }),
    );
    expect(err).to.be.instanceOf(InsufficientCreditsError);
    const e = err as InsufficientCreditsError;
    expect(e.status).to.equal(402);
    expect(e.required).to.equal(2);
    expect(e.available).to.equal(0.5);
    expect(e.shortfall).to.equal(1.5);
  });

  it('429 rate limit: RateLimitError with retryAfter; a wait beyond the cap is not slept through', async () => {
    const u = await buildUser(d);
    const key = (await buildApiKey(d, u, { rate_limit_per_hour: 1 })).key;
    let calls = 0;
    const client = sdk(d, { apiKey: key }, { fetch: (url, init) => ((calls += 1), fetch(url, init)) });
    await client.me();
    const started = Date.now();
    const err = await rejection(client.me());
    expect(err).to.be.instanceOf(RateLimitError);
    expect(err).to.include({ code: 'RATE_LIMITED', status: 429 });
    expect((err as RateLimitError).retryAfter).to.be.greaterThan(60);
    expect(calls).to.equal(2);
    expect(Date.now() - started).to.be.below(1000);
  });

  it('429 concurrency: RateLimitError CONCURRENCY_LIMIT when the tier has no free session slot', async () => {
    const u = await buildUser(d, { tier: 'individual' });
    await grant(d, u, 10);
    const client = sdk(d, { accessToken: u.token }, { maxRetries: 0 });
    const slow = { vision: 'Take your time with this [slow:300] [iterations:50]', options: { costBudget: 1 } };
    const running = [await client.execute(slow), await client.execute(slow)];
    const err = await rejection(client.execute(slow));
    expect(err).to.be.instanceOf(RateLimitError);
    expect(err).to.include({ code: 'CONCURRENCY_LIMIT', status: 429 });
    expect((err as RateLimitError).retryAfter).to.be.a('number');
    for (const r of running) await client.sessions.cancel(r.session.id);
  });

  it("404 another user's session: NotFoundError for get, events and cancel", async () => {
    const owner = await buildUser(d, { tier: 'team' });
    const other = sdk(d, { accessToken: (await buildUser(d)).token });
    await grant(d, owner, 5);
    const id = (
      await sdk(d, { accessToken: owner.token }).execute({
        vision: 'A session that belongs to its owner',
        options: { costBudget: 1 },
      })
    ).session.id;
    for (const call of [other.sessions.get(id), other.sessions.events(id), other.sessions.cancel(id)]) {
      const err = await rejection(call);
      expect(err).to.be.instanceOf(NotFoundError);
      expect(err).to.include({ code: 'NOT_FOUND', status: 404 });
    }
  });

  it('409 idempotency key reused with another body: ConflictError', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 5);
    const client = sdk(d, { accessToken: u.token });
    await client.execute(
      { vision: 'Build a small todo application', options: { costBudget: 1 } },
      { idempotencyKey: 'same-key' },
    );
    const err = await rejection(
      client.execute(
        { vision: 'Build something else entirely', options: { costBudget: 1 } },
        { idempotencyKey: 'same-key' },
      ),
    );
    expect(err).to.be.instanceOf(ConflictError);
    expect(err).to.include({ code: 'IDEMPOTENCY_KEY_REUSED', status: 409 });
  });
});

describe('SDK retries and transport errors', () => {
  it('503: retried with the same Idempotency-Key, then a ServerError after maxRetries', async () => {
    const keys: Array<string | undefined> = [];
    const server = await scriptedServer((req, res) => {
      keys.push(req.headers['idempotency-key'] as string | undefined);
      res
        .writeHead(503, { 'content-type': 'application/json', 'retry-after': '0' })
        .end(envelope('SYSTEM_ERROR', 'UNAVAILABLE'));
    });
    try {
      const err = await rejection(
        sdk(server.url, { apiKey: 'ak_live_x' }).execute({ vision: 'Build a small todo application' }),
      );
      expect(err).to.be.instanceOf(ServerError);
      expect(err).to.include({ code: 'UNAVAILABLE', status: 503, requestId: 'req_scripted' });
      expect(server.hits).to.equal(3);
      expect(new Set(keys).size).to.equal(1);
      expect(keys[0]).to.match(/^[0-9a-f-]{36}$/);
    } finally {
      await server.close();
    }
  });

  it('500 without an envelope (a proxy): ServerError by status; GETs carry no idempotency key', async () => {
    const keys: Array<string | undefined> = [];
    const server = await scriptedServer((req, res) => {
      keys.push(req.headers['idempotency-key'] as string | undefined);
      res.writeHead(500, { 'content-type': 'text/html' }).end('<h1>Internal Server Error</h1>');
    });
    try {
      const err = await rejection(sdk(server.url, { apiKey: 'ak_live_x' }, { maxRetries: 1 }).me());
      expect(err).to.be.instanceOf(ServerError);
      expect(err).to.include({ type: 'SYSTEM_ERROR', code: 'HTTP_500', status: 500 });
      expect(server.hits).to.equal(2);
      expect(keys).to.deep.equal([undefined, undefined]);
    } finally {
      await server.close();
    }
  });

  it('honors Retry-After, then succeeds; a 409 IDEMPOTENCY_KEY_IN_USE (first attempt still running) is waited out too', async () => {
    const server = await scriptedServer((_req, res, hit) => {
      if (hit === 1)
        res
          .writeHead(429, { 'content-type': 'application/json', 'retry-after': '1' })
          .end(envelope('RATE_LIMIT_ERROR', 'RATE_LIMITED'));
      else if (hit === 2)
        res.writeHead(409, { 'content-type': 'application/json' }).end(envelope('CONFLICT', 'IDEMPOTENCY_KEY_IN_USE'));
      else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ success: true, ok: 1 }));
    });
    try {
      const started = Date.now();
      const r = await sdk(server.url, { apiKey: 'ak_live_x' }).request('POST', '/v1/anything', { body: {} });
      expect(r).to.deep.equal({ success: true, ok: 1 });
      expect(server.hits).to.equal(3);
      expect(Date.now() - started).to.be.at.least(1000);
    } finally {
      await server.close();
    }
  });

  it('a Retry-After beyond the cap (60 s) is thrown at once', async () => {
    const server = await scriptedServer((_req, res) => {
      res
        .writeHead(503, { 'content-type': 'application/json', 'retry-after': '120' })
        .end(envelope('SYSTEM_ERROR', 'UNAVAILABLE'));
    });
    try {
      const err = await rejection(sdk(server.url, { apiKey: 'ak_live_x' }).me());
      expect(err).to.be.instanceOf(ServerError);
      expect(server.hits).to.equal(1);
    } finally {
      await server.close();
    }
  });

  it('ConnectionError to a closed port, after the retries', async () => {
    const port = await closedPort();
    let calls = 0;
    const err = await rejection(
      sdk(
        `http://127.0.0.1:${port}`,
        { apiKey: 'ak_live_x' },
        { maxRetries: 2, fetch: (url, init) => ((calls += 1), fetch(url, init)) },
      ).me(),
    );
    expect(err).to.be.instanceOf(ConnectionError);
    expect(err).to.include({ code: 'CONNECTION_FAILED', status: null });
    expect(err.message).to.match(/ECONNREFUSED/);
    expect(calls).to.equal(3);
  });

  it('TimeoutError from a server that never answers', async () => {
    // Attempts are counted as fetch calls and as requests the server received, not as TCP connections: after an
    // aborted request undici may open a spare connection that carries nothing (Node 24's closes it at once, before
    // the retry; Node 20's keeps it idle), so the number of connections is the pool's business, not the SDK's.
    const held = new Set<net.Socket>();
    const requested = new Set<net.Socket>();
    const server = net.createServer((s) => {
      held.add(s);
      s.on('data', () => requested.add(s));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
      let calls = 0;
      const counting: FetchLike = (u, init) => ((calls += 1), fetch(u, init));
      const started = Date.now();
      const client = sdk(url, { apiKey: 'ak_live_x' }, { timeout: 200, maxRetries: 1, fetch: counting });
      const err = await rejection(client.me());
      expect(err).to.be.instanceOf(TimeoutError);
      expect(err).to.include({ code: 'TIMEOUT', status: null });
      expect(calls).to.equal(2);
      expect(requested.size).to.equal(2);
      expect(Date.now() - started).to.be.below(3000);
    } finally {
      for (const s of held) s.destroy();
      server.close();
    }
  });

  it("the caller's AbortSignal stops a request and its retries", async () => {
    const server = await scriptedServer((_req, res) => {
      res.writeHead(503, { 'content-type': 'application/json' }).end(envelope('SYSTEM_ERROR', 'UNAVAILABLE'));
    });
    try {
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 100);
      const outcome = await sdk(server.url, { apiKey: 'ak_live_x' }, { maxRetries: 10 })
        .request('GET', '/v1/me', { signal: ac.signal })
        .then(
          () => null,
          (e: unknown) => e,
        );
      expect((outcome as Error).name).to.equal('AbortError');
      expect(server.hits).to.be.below(5);
    } finally {
      await server.close();
    }
  });
});
