import { expect } from 'chai';
import { AccessTokens } from '../../../daemon/auth/access-tokens.js';
import { describeShared } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import {
  buildApiKey,
  buildTenant,
  buildUser,
  platformAdmin,
  principal,
  type TestUser,
} from '../../helpers/factories.js';
import { closeClients, connect, eventually, metric, refused, seedSession } from './support.js';

const ORIGIN = 'https://app.example.test';

/** A token signed with the daemon's key whose lifetime is `ttlSeconds`, issued `agoMs` in the past. */
function tokenFor(d: TestDaemon, u: TestUser, ttlSeconds: number, agoMs = 0): string {
  const signer = new AccessTokens(d.container.jwtSecret, {
    issuer: d.config.auth.issuer,
    audience: d.config.auth.audience,
    ttlSeconds,
    clock: { now: () => Date.now() - agoMs },
  });
  return signer.sign({
    id: u.user.id,
    scopes: ['agents:execute', 'sessions:read', 'credits:read', 'keys:manage'],
    tier: u.user.tier,
    role: u.user.role,
    tenantId: u.user.tenant_id,
  });
}

describeShared('stream: authentication and isolation', (shared) => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon({ shared, config: { stream: { allowed_origins: [ORIGIN] } } });
    // Re-check credentials often so the 1008 closes land well within the bounds below.
    d.container.stream.tune({ recheckIntervalMs: 200 });
  });
  afterEach(() => closeClients());
  after(async () => d?.stop());

  it('refuses an upgrade without credentials, or with bad ones, with a real 401 and the JSON envelope', async () => {
    const none = await refused(d, {});
    expect(none.status).to.equal(401);
    expect(none.headers['content-type']).to.equal('application/json');
    expect(none.headers.connection).to.equal('close');
    expect(none.body).to.deep.include({ success: false });
    expect(none.body.error).to.include({ type: 'AUTHENTICATION_ERROR', code: 'MISSING_TOKEN' });
    expect(none.body.request_id).to.match(/^req_/);
    expect((await refused(d, { token: 'not.a.jwt' })).body.error.code).to.equal('INVALID_TOKEN');
    expect((await refused(d, { headers: { authorization: 'Basic abc' } })).body.error.code).to.equal(
      'INVALID_TOKEN_FORMAT',
    );
    expect((await refused(d, { query: 'token=garbage' })).status).to.equal(401);
    expect((await refused(d, { query: 'ticket=stk_nope' })).body.error.code).to.equal('INVALID_TOKEN');
    expect(await metric(d, 'keen_stream_connections')).to.equal(0);
  });

  it('accepts a Bearer header, an ApiKey header and ?token=, and never logs the query string', async () => {
    const u = await buildUser(d);
    const k = await buildApiKey(d, u);
    await connect(d, { token: u.token });
    await connect(d, { apiKey: k.key });
    await connect(d, { query: `token=${encodeURIComponent(u.token)}` });
    const logs = d.logs.join('');
    expect(logs).not.to.include(u.token);
    expect(logs).not.to.include(k.key);
  });

  it('answers other paths with 404 and no socket', async () => {
    const u = await buildUser(d);
    const ws = await import('ws');
    const res = await new Promise<number>((resolve, reject) => {
      const c = new ws.default(`${d.url.replace('http', 'ws')}/v1/other`, {
        headers: { authorization: `Bearer ${u.token}` },
      });
      c.once('unexpected-response', (_req, r) => resolve(r.statusCode ?? 0));
      c.once('open', () => reject(new Error('opened')));
      c.once('error', () => undefined);
    });
    expect(res).to.equal(404);
  });

  it('requires the sessions:read scope (403 before the upgrade)', async () => {
    const u = await buildUser(d);
    const k = await buildApiKey(d, u, { scopes: ['credits:read'] });
    const r = await refused(d, { apiKey: k.key });
    expect(r.status).to.equal(403);
    expect(r.body.error.code).to.equal('INSUFFICIENT_SCOPE');
  });

  it('refuses a forged Origin with 403, and accepts an allowed one', async () => {
    const u = await buildUser(d);
    const r = await refused(d, { token: u.token, headers: { origin: 'https://evil.example' } });
    expect(r.status).to.equal(403);
    expect(r.body.error.code).to.equal('FORBIDDEN');
    expect((await refused(d, { token: u.token, headers: { origin: `${ORIGIN}.evil.example` } })).status).to.equal(403);
    await connect(d, { token: u.token, headers: { origin: ORIGIN } });
  });

  it('limits open connections per user (429 before the upgrade)', async () => {
    d.container.stream.tune({ maxConnectionsPerUser: 3 });
    try {
      const u = await buildUser(d);
      const open = await Promise.all([1, 2, 3].map(() => connect(d, { token: u.token })));
      const r = await refused(d, { token: u.token });
      expect(r.status).to.equal(429);
      expect(r.headers['retry-after']).to.be.a('string');
      // Another user is not affected; a closed connection frees its slot.
      await connect(d, { token: (await buildUser(d)).token });
      open[0]!.close();
      await open[0]!.closed;
      await eventually(async () => (await metric(d, 'keen_stream_connections')) <= 3, 5_000, 'the slot to be freed');
      await connect(d, { token: u.token });
    } finally {
      d.container.stream.tune({ maxConnectionsPerUser: 20 });
    }
  });

  it("answers NOT_FOUND for another user's session exactly as for a nonexistent one", async () => {
    const x = await buildUser(d);
    const y = await buildUser(d);
    const ys = await seedSession(d, y, 5);
    const c = await connect(d, { token: x.token });
    c.send({ type: 'subscribe', session_id: ys, after: 0 });
    c.send({ type: 'subscribe', session_id: 'ses_00000000000000000000000000', after: 0 });
    c.send({ type: 'subscribe', session_id: 'whatever', after: 0 });
    await c.until((m) => m.filter((e) => e.type === 'error').length >= 3, 5_000, 'three errors');
    const answer = (id: string) => c.errors().find((e) => e.session_id === id)!;
    const theirs = answer(ys);
    const none = answer('ses_00000000000000000000000000');
    const junk = answer('whatever');
    expect(theirs).to.deep.equal({
      type: 'error',
      error: { code: 'NOT_FOUND', message: 'session not found' },
      session_id: ys,
    });
    expect({ ...none, session_id: ys }).to.deep.equal(theirs);
    expect({ ...junk, session_id: ys }).to.deep.equal(theirs);
    expect(c.events()).to.deep.equal([]);
    // Nor through the URL.
    const c2 = await connect(d, { token: x.token, query: `sessions=${ys}&after=0` });
    await c2.until((m) => m.some((e) => e.type === 'error'), 5_000, 'an error');
    expect(c2.errors()[0]!.error.code).to.equal('NOT_FOUND');
    expect(c2.events()).to.deep.equal([]);
  });

  it("a tenant admin follows their tenant's sessions, never another tenant's", async () => {
    const t1 = await buildTenant(d);
    const t2 = await buildTenant(d);
    const admin1 = await buildUser(d, { role: 'admin', tenantId: t1 });
    expect(admin1.user.role).to.equal('tenant_admin');
    const m1 = await buildUser(d, { tenantId: t1 });
    const m2 = await buildUser(d, { tenantId: t2 });
    const own = await seedSession(d, m1, 4);
    const other = await seedSession(d, m2, 4);
    const c = await connect(d, { token: admin1.token });
    c.send({ type: 'subscribe', session_id: own, after: 0 });
    c.send({ type: 'subscribe', session_id: other, after: 0 });
    await c.untilEnd(own);
    await c.until((m) => m.some((e) => e.type === 'error'), 5_000, 'an error');
    expect(c.events(own).map((e) => e.seq)).to.deep.equal([1, 2, 3, 4]);
    expect(c.errors()).to.deep.equal([
      { type: 'error', error: { code: 'NOT_FOUND', message: 'session not found' }, session_id: other },
    ]);
    expect(c.events(other)).to.deep.equal([]);
    // A member of the same tenant sees only their own.
    const peer = await buildUser(d, { tenantId: t1 });
    const p = await connect(d, { token: peer.token });
    p.send({ type: 'subscribe', session_id: own, after: 0 });
    await p.until((m) => m.some((e) => e.type === 'error'), 5_000, 'an error');
    expect(p.errors()[0]!.error.code).to.equal('NOT_FOUND');
  });

  it('a revoked API key: 401 at the upgrade, and its open connection is closed with 1008', async () => {
    const u = await buildUser(d);
    const k = await buildApiKey(d, u);
    const c = await connect(d, { apiKey: k.key });
    const del = await d.api.delete(`/v1/api-keys/${k.id}`, { token: u.token });
    expect(del.status, del.text).to.equal(200);
    const closed = await c.closedWithin(10_000);
    expect(closed).to.deep.equal({ code: 1008, reason: 'API_KEY_REVOKED' });
    const r = await refused(d, { apiKey: k.key });
    expect(r.status).to.equal(401);
    expect(r.body.error.code).to.equal('API_KEY_REVOKED');
  });

  it('an expired token: 401 at the upgrade; a token that expires while connected is closed with 1008', async () => {
    const u = await buildUser(d);
    const old = tokenFor(d, u, 60, 3_600_000);
    const r = await refused(d, { token: old });
    expect(r.status).to.equal(401);
    expect(r.body.error.code).to.equal('TOKEN_EXPIRED');
    const short = tokenFor(d, u, 2);
    const c = await connect(d, { token: short });
    expect(await c.closedWithin(10_000)).to.deep.equal({ code: 1008, reason: 'TOKEN_EXPIRED' });
  });

  it("a suspended user's open connections are closed with 1008 within seconds", async () => {
    const u = await buildUser(d);
    const k = await buildApiKey(d, u);
    const viaToken = await connect(d, { token: u.token });
    const viaKey = await connect(d, { apiKey: k.key });
    const bystander = await connect(d, { token: (await buildUser(d)).token });
    await d.container.users.suspend(principal(await platformAdmin(d)), u.user.id);
    expect((await viaToken.closedWithin(10_000)).code).to.equal(1008);
    expect(await viaKey.closedWithin(10_000)).to.deep.equal({ code: 1008, reason: 'ACCOUNT_SUSPENDED' });
    expect((await refused(d, { apiKey: k.key })).status).to.equal(401);
    await new Promise((res) => setTimeout(res, 500));
    expect(bystander.ws.readyState).to.equal(bystander.ws.OPEN);
  });

  describe('tickets', () => {
    it('POST /v1/stream/tickets needs a credential with sessions:read', async () => {
      const u = await buildUser(d);
      expect((await d.api.post('/v1/stream/tickets', {})).status).to.equal(401);
      const k = await buildApiKey(d, u, { scopes: ['credits:read'] });
      const r = await d.api.post('/v1/stream/tickets', {}, { apiKey: k.key });
      expect(r.status).to.equal(403);
      expect(r.body.error.code).to.equal('INSUFFICIENT_SCOPE');
    });

    it('a ticket opens the stream once, within 30 s, and is never logged', async () => {
      const u = await buildUser(d);
      const r = await d.api.post('/v1/stream/tickets', {}, { token: u.token });
      expect(r.status, r.text).to.equal(201);
      expect(r.body.success).to.equal(true);
      expect(r.body.ticket).to.match(/^stk_[A-Za-z0-9_-]{43}$/);
      const ttl = Date.parse(r.body.expires_at) - Date.now();
      expect(ttl).to.be.within(20_000, 30_000);
      const c = await connect(d, { query: `ticket=${r.body.ticket}`, headers: { origin: ORIGIN } });
      // The ticket stands for its user: their sessions, nobody else's.
      const own = await seedSession(d, u, 2);
      c.send({ type: 'subscribe', session_id: own, after: 0 });
      await c.untilEnd(own);
      const again = await refused(d, { query: `ticket=${r.body.ticket}` });
      expect(again.status).to.equal(401);
      expect(again.body.error.code).to.equal('INVALID_TOKEN');
      expect(d.logs.join('')).not.to.include(r.body.ticket);
    });

    it('a ticket expires with its credential, at the latest after 30 s', async () => {
      const u = await buildUser(d);
      const k = await buildApiKey(d, u, { expires_at: new Date(Date.now() + 2_500).toISOString() });
      const r = await d.api.post('/v1/stream/tickets', {}, { apiKey: k.key });
      expect(r.status, r.text).to.equal(201);
      expect(Date.parse(r.body.expires_at) - Date.now()).to.be.at.most(2_500);
      await new Promise((res) => setTimeout(res, 2_800));
      const late = await refused(d, { query: `ticket=${r.body.ticket}` });
      expect(late.status).to.equal(401);
      // Gone from the store (not merely refused because the key expired).
      expect(late.body.error.code).to.equal('INVALID_TOKEN');
    });

    it('a ticket of a user suspended since is refused', async () => {
      const u = await buildUser(d);
      const r = await d.api.post('/v1/stream/tickets', {}, { token: u.token });
      await d.container.users.suspend(principal(await platformAdmin(d)), u.user.id);
      const late = await refused(d, { query: `ticket=${r.body.ticket}` });
      expect(late.status).to.equal(401);
      expect(late.body.error.code).to.equal('ACCOUNT_SUSPENDED');
    });
  });
});
