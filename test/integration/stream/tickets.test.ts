import { expect } from 'chai';
import { describeShared } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildApiKey, buildUser } from '../../helpers/factories.js';
import { closeClients, connect, metric, seedSession } from './support.js';

const ORIGIN = 'https://app.example.test';
const AUTH = 'keen_auth_attempts_total';

/**
 * `POST /v1/stream/tickets` is authenticated once, by the route's guard: the ticket is issued from
 * the principal the edge accepted (AuthService.grantOf), never by authenticating the header again.
 */
describeShared('stream tickets: one authentication per request', (shared) => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon({ shared, config: { stream: { allowed_origins: [ORIGIN] } } });
  });
  afterEach(() => closeClients());
  after(async () => d?.stop());

  it('a Bearer token moves the auth metric once, and its ticket opens the stream', async () => {
    const u = await buildUser(d);
    const before = await metric(d, AUTH, { method: 'jwt', outcome: 'success' });
    const r = await d.api.post('/v1/stream/tickets', {}, { token: u.token });
    expect(r.status, r.text).to.equal(201);
    expect(await metric(d, AUTH, { method: 'jwt', outcome: 'success' })).to.equal(before + 1);
    const c = await connect(d, { query: `ticket=${r.body.ticket}`, headers: { origin: ORIGIN } });
    const own = await seedSession(d, u, 2);
    c.send({ type: 'subscribe', session_id: own, after: 0 });
    await c.untilEnd(own);
  });

  it('an API key moves the auth metric once, and its ticket ends with the key', async () => {
    const u = await buildUser(d);
    const k = await buildApiKey(d, u, { expires_at: new Date(Date.now() + 5_000).toISOString() });
    const before = await metric(d, AUTH, { method: 'api_key', outcome: 'success' });
    const r = await d.api.post('/v1/stream/tickets', {}, { apiKey: k.key });
    expect(r.status, r.text).to.equal(201);
    expect(await metric(d, AUTH, { method: 'api_key', outcome: 'success' })).to.equal(before + 1);
    // The grant still carries the key's expiry: the ticket does not outlive it.
    expect(Date.parse(r.body.expires_at) - Date.now()).to.be.at.most(5_000);
  });

  it('a refused credential is counted once and gets no ticket', async () => {
    const before = await metric(d, AUTH, { method: 'jwt', outcome: 'invalid_token' });
    const r = await d.api.post('/v1/stream/tickets', {}, { token: 'not.a.jwt' });
    expect(r.status).to.equal(401);
    expect(await metric(d, AUTH, { method: 'jwt', outcome: 'invalid_token' })).to.equal(before + 1);
  });

  it('grantOf refuses a header that is not the one the principal came from', async () => {
    const u = await buildUser(d);
    const k = await buildApiKey(d, u);
    const other = await buildUser(d);
    const p = await d.container.auth.authenticate(`Bearer ${u.token}`);
    // Another credential's header, or another scheme: never a grant for this principal.
    for (const header of [`ApiKey ${k.key}`, `Bearer ${other.token}`, 'Bearer', u.token]) {
      const err = await d.container.auth.grantOf(p, header).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err, header.slice(0, 12)).to.have.property('code', 'INVALID_TOKEN');
    }
    const otherKey = await buildApiKey(d, other);
    const viaKey = await d.container.auth.authenticate(`ApiKey ${k.key}`);
    for (const header of [`ApiKey ${otherKey.key}`, `Bearer ${u.token}`]) {
      const err = await d.container.auth.grantOf(viaKey, header).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err, header.slice(0, 12)).to.have.property('code', 'INVALID_TOKEN');
    }
    expect((await d.container.auth.grantOf(viaKey, `ApiKey ${k.key}`)).secretHash).to.be.a('string');
    const g = await d.container.auth.grantOf(p, `Bearer ${u.token}`);
    expect(g.principal).to.equal(p);
    expect(g.issuedAtMs).to.be.a('number');
  });
});
