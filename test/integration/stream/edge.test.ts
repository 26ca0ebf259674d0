import { expect } from 'chai';
import WebSocket from 'ws';
import { describeShared } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { auditRows, buildApiKey, buildUser, type TestUser } from '../../helpers/factories.js';
import { closeClients, connect, eventually, refused, seedSession, streamUrl, type StreamClient } from './support.js';

/**
 * The stream's upgrade goes through the same edge as an HTTP request (daemon/http/edge.ts):
 * the same request id, the same client address (trusted-proxy rule), the same error envelope.
 */
describeShared('stream: one edge with HTTP', (shared) => {
  let plain: TestDaemon;
  let proxied: TestDaemon;
  before(async () => {
    plain = await startDaemon({ shared });
    proxied = await startDaemon({ shared, config: { server: { trusted_proxies: ['127.0.0.1'] } } });
    for (const d of [plain, proxied]) d.container.stream.tune({ recheckIntervalMs: 200 });
  });
  afterEach(() => closeClients());
  after(async () => {
    await plain?.stop();
    await proxied?.stop();
  });

  /** Subscribes `c` to someone else's session and returns the `access.not_found` entry it was audited as. */
  async function probe(d: TestDaemon, c: StreamClient, x: TestUser) {
    const theirs = await seedSession(d, await buildUser(d), 2);
    c.send({ type: 'subscribe', session_id: theirs, after: 0 });
    await c.until((m) => m.some((e) => e.type === 'error'), 5_000, 'NOT_FOUND');
    let row: Awaited<ReturnType<typeof auditRows>>[number] | undefined;
    await eventually(
      async () => {
        row = (await auditRows(d)).find(
          (a) => a.action === 'access.not_found' && a.target_id === theirs && a.actor_id === x.user.id,
        );
        return row !== undefined;
      },
      5_000,
      'the access.not_found entry',
    );
    return row!;
  }

  const logLines = (d: TestDaemon) =>
    d.logs
      .join('')
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as Record<string, unknown>);

  it('a spoofed X-Forwarded-For from an untrusted peer changes neither the audited nor the logged address', async () => {
    const x = await buildUser(plain);
    const c = await connect(plain, { token: x.token, headers: { 'x-forwarded-for': '203.0.113.9' } });
    const row = await probe(plain, c, x);
    expect(row.ip).to.equal('127.0.0.1');
    const r = await refused(plain, {
      token: 'junk',
      headers: { 'x-forwarded-for': '203.0.113.9', 'x-request-id': 'spoof-check-0001' },
    });
    expect(r.status).to.equal(401);
    const line = logLines(plain).find((l) => l.req_id === 'spoof-check-0001');
    expect(line, 'a log line for the refused upgrade').to.not.equal(undefined);
    expect(line!.ip).to.equal('127.0.0.1');
    expect(plain.logs.join('')).not.to.include('203.0.113.9');
  });

  it('behind a trusted proxy, the stream takes the client address from X-Forwarded-For as HTTP does', async () => {
    const x = await buildUser(proxied);
    const c = await connect(proxied, { token: x.token, headers: { 'x-forwarded-for': '198.51.100.7' } });
    const row = await probe(proxied, c, x);
    expect(row.ip).to.equal('198.51.100.7');
    await refused(proxied, {
      token: 'junk',
      headers: { 'x-forwarded-for': '198.51.100.8', 'x-request-id': 'proxied-check-01' },
    });
    expect(logLines(proxied).find((l) => l.req_id === 'proxied-check-01')?.ip).to.equal('198.51.100.8');
  });

  it('an X-Request-Id on the upgrade is kept: the refusal, the 101, the log line and the audit entry carry it', async () => {
    const refusal = await refused(plain, { headers: { 'x-request-id': 'client-trace-0001' } });
    expect(refusal.status).to.equal(401);
    expect(refusal.body.request_id).to.equal('client-trace-0001');
    expect(refusal.headers['x-request-id']).to.equal('client-trace-0001');
    // A malformed one is replaced, exactly as on HTTP.
    const bad = await refused(plain, { headers: { 'x-request-id': 'no spaces allowed' } });
    expect(bad.body.request_id).to.match(/^req_/);
    expect(bad.headers['x-request-id']).to.equal(bad.body.request_id);

    const x = await buildUser(plain);
    const upgraded = await new Promise<string | undefined>((resolve, reject) => {
      const ws = new WebSocket(streamUrl(plain), {
        headers: { authorization: `Bearer ${x.token}`, 'x-request-id': 'client-trace-0002' },
      });
      ws.once('upgrade', (res) => {
        resolve(res.headers['x-request-id'] as string | undefined);
        ws.terminate();
      });
      ws.once('error', reject);
    });
    expect(upgraded).to.equal('client-trace-0002');
    const c = await connect(plain, { token: x.token, headers: { 'x-request-id': 'client-trace-0003' } });
    const row = await probe(plain, c, x);
    expect(row.request_id).to.equal('client-trace-0003');
    expect(
      logLines(plain).some((l) => l.req_id === 'client-trace-0003' && l.msg === 'stream connection opened'),
    ).to.equal(true);
  });

  it('a refused upgrade answers the HTTP error envelope, field for field', async () => {
    const viaHttp = await plain.api.get('/v1/credits/balance', {
      headers: { authorization: 'Basic abc', 'x-request-id': 'shape-check-0001' },
    });
    const viaStream = await refused(plain, {
      headers: { authorization: 'Basic abc', 'x-request-id': 'shape-check-0001' },
    });
    expect(viaStream.status).to.equal(viaHttp.status);
    expect(viaStream.body).to.deep.equal(viaHttp.body);
  });

  it('a signed-out access token closes its open stream with 1008 (logout ends the sign-in)', async () => {
    const u = await buildUser(plain, { withPassword: true });
    const login = await plain.api.post('/v1/auth/login', { email: u.email, password: u.password });
    expect(login.status, login.text).to.equal(200);
    const { access_token, refresh_token } = login.body.tokens as { access_token: string; refresh_token: string };
    const c = await connect(plain, { token: access_token });
    const out = await plain.api.post('/v1/auth/logout', { refresh_token }, { token: access_token });
    expect(out.status, out.text).to.be.oneOf([200, 204]);
    expect(await c.closedWithin(10_000)).to.deep.equal({ code: 1008, reason: 'INVALID_TOKEN' });
    expect((await refused(plain, { token: access_token })).status).to.equal(401);
  });

  it("a rolled API key's previous secret: its open stream closes when the grace period ends, the new secret's stays", async () => {
    const u = await buildUser(plain);
    const k = await buildApiKey(plain, u);
    const old = await connect(plain, { apiKey: k.key });
    const roll = await plain.api.post(`/v1/api-keys/${k.id}/roll`, { grace_seconds: 0 }, { token: u.token });
    expect(roll.status, roll.text).to.equal(200);
    const fresh = await connect(plain, { apiKey: roll.body.key as string });
    expect(await old.closedWithin(10_000)).to.deep.equal({ code: 1008, reason: 'INVALID_TOKEN' });
    expect((await refused(plain, { apiKey: k.key })).body.error.code).to.equal('INVALID_TOKEN');
    await new Promise((res) => setTimeout(res, 600));
    expect(fresh.ws.readyState).to.equal(fresh.ws.OPEN);
  });
});
