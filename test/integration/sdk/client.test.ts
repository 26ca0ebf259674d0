import { expect } from 'chai';
import { ManualClock } from '../../../daemon/clock.js';
import { AuthenticationError, KeenClient, type FetchLike, type TokenPair } from '../../../sdk/src/index.js';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildApiKey, buildUser } from '../../helpers/factories.js';
import { expectLedgerClean, grant } from '../../helpers/sessions.js';
import { sdk } from './support.js';

const FINAL = ['completed', 'failed', 'cancelled', 'budget_exhausted', 'timed_out', 'interrupted'];

async function untilEnded(client: KeenClient, id: string) {
  for (const until = Date.now() + 20_000; Date.now() < until; await new Promise((r) => setTimeout(r, 50))) {
    const s = await client.sessions.get(id);
    if (FINAL.includes(s.status)) return s;
  }
  throw new Error(`session ${id} did not end`);
}

describe('SDK resources against a real daemon', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon();
  });
  after(async () => d?.stop());

  it('executes, quotes, reads the session, its events, the credits and the user with an API key', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 20);
    const client = sdk(d, { apiKey: (await buildApiKey(d, u)).key });

    const me = await client.me();
    expect(me).to.deep.include({ auth: 'api_key' });
    expect(me.user.id).to.equal(u.user.id);

    const request = { vision: 'Build a small todo application', options: { maxIterations: 2, costBudget: 2 } };
    const quote = await client.quote(request);
    expect(quote.reservation).to.equal(2);
    expect(quote.admission).to.deep.equal({ allowed: true, reasons: [] });

    const run = await client.execute(request);
    expect(run.session.id).to.match(/^ses_/);
    expect(run.credit_reserved).to.equal(2);
    const end = await untilEnded(client, run.session.id);
    expect(end.status).to.equal('completed');

    const page = await client.sessions.list({ limit: 10 });
    expect(page.sessions.map((s) => s.id)).to.deep.equal([run.session.id]);
    const all: string[] = [];
    for await (const s of client.sessions.all({ status: 'completed' })) all.push(s.id);
    expect(all).to.deep.equal([run.session.id]);

    const events = await client.sessions.events(run.session.id);
    expect(events.events.map((e) => e.seq)).to.deep.equal(events.events.map((_, i) => i + 1));
    expect(events.events.at(-1)).to.deep.include({ type: 'session.status' });
    const tail = await client.sessions.events(run.session.id, { after: events.last_seq - 1 });
    expect(tail.events.map((e) => e.seq)).to.deep.equal([events.last_seq]);

    const balance = await client.credits.balance();
    expect(balance.reserved).to.equal(0);
    expect(balance.balance).to.be.closeTo(20 - end.final_cost!, 1e-6);

    // One entry per page: the iterator walks every page, newest first, without a repeat.
    const onePerPage = (await client.credits.transactions({ limit: 1 })).transactions;
    expect(onePerPage).to.have.length(1);
    const walked = [];
    for await (const t of client.credits.allTransactions({ limit: 1 })) walked.push(t);
    const inOnePage = (await client.credits.transactions({ limit: 100 })).transactions;
    expect(walked.map((t) => t.id)).to.deep.equal(inOnePage.map((t) => t.id));
    expect(walked.map((t) => t.kind)).to.include.members(['grant', 'reserve', 'charge']);
    expect(walked[0]!.id).to.equal(onePerPage[0]!.id);
  });

  it('cancels a running session: charged what it used', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 10);
    const client = sdk(d, { accessToken: u.token });
    const run = await client.execute({
      vision: 'Take your time with this [slow:200] [iterations:50]',
      options: { costBudget: 3, maxIterations: 50 },
    });
    // Cancel once usage was reported: a cancelled session is charged what it used, never nothing.
    for (
      const until = Date.now() + 15_000;
      (await client.sessions.get(run.session.id)).cost_so_far === 0;
      await new Promise((r) => setTimeout(r, 50))
    ) {
      if (Date.now() > until) throw new Error('the agent never reported usage');
    }
    const s = await client.sessions.cancel(run.session.id);
    expect(s.status).to.equal('cancelled');
    expect(s.final_cost).to.be.greaterThan(0);
    expect(s.final_cost).to.equal(s.cost_so_far);
    const balance = await client.credits.balance();
    expect(balance.reserved).to.equal(0);
    expect(balance.balance).to.be.closeTo(10 - (s.final_cost ?? 0), 1e-6);
  });

  it('lists, creates and revokes API keys with a user token; the new key works until revoked', async () => {
    const u = await buildUser(d);
    const client = sdk(d, { accessToken: u.token });
    const created = await client.apiKeys.create({ name: 'ci', scopes: ['sessions:read'] });
    expect(created.key).to.match(/^ak_live_/);
    expect(created.api_key).to.deep.include({ name: 'ci', scopes: ['sessions:read'], status: 'active' });
    expect((await client.apiKeys.list()).map((k) => k.id)).to.include(created.api_key.id);

    const withKey = sdk(d, { apiKey: created.key });
    expect((await withKey.me()).api_key_id).to.equal(created.api_key.id);
    expect((await client.apiKeys.revoke(created.api_key.id)).status).to.equal('revoked');
    const err = await withKey.me().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(AuthenticationError);
    expect((err as AuthenticationError).code).to.equal('API_KEY_REVOKED');
  });
});

describeStorage('SDK retries of execute', (backend) => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon({ backend });
  });
  after(async () => d?.stop());

  it('retries an execute whose answer was lost with the same Idempotency-Key: one session, one reservation, one charge', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 10);
    const keys: string[] = [];
    // The request reaches the daemon and runs; then the connection "resets" before the answer is read.
    const resetOnce: FetchLike = async (url, init) => {
      const res = await fetch(url, init);
      if (url.endsWith('/v1/agents/execute')) {
        keys.push((init.headers as Record<string, string>)['idempotency-key']!);
        if (keys.length === 1) {
          await res.text();
          throw new TypeError('fetch failed', {
            cause: Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }),
          });
        }
      }
      return res;
    };
    const client = sdk(d, { apiKey: (await buildApiKey(d, u)).key }, { fetch: resetOnce });
    const run = await client.execute({ vision: 'Build a small todo application', options: { costBudget: 2 } });

    expect(keys).to.have.length(2);
    expect(keys[1]).to.equal(keys[0]);
    const sessions = (await client.sessions.list()).sessions;
    expect(sessions.map((s) => s.id)).to.deep.equal([run.session.id]);
    await untilEnded(client, run.session.id);
    const kinds: string[] = [];
    for await (const t of client.credits.allTransactions()) kinds.push(t.kind);
    expect(kinds.filter((k) => k === 'reserve')).to.have.length(1);
    expect(kinds.filter((k) => k === 'charge')).to.have.length(1);
    await expectLedgerClean(d);
  });

  it('keeps a caller-chosen idempotency key across calls: the second call answers the first run', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 10);
    const client = sdk(d, { accessToken: u.token });
    const request = { vision: 'Build a small todo application', options: { costBudget: 1 } };
    const a = await client.execute(request, { idempotencyKey: 'order-42' });
    const b = await client.execute(request, { idempotencyKey: 'order-42' });
    expect(b.session.id).to.equal(a.session.id);
    expect((await client.sessions.list()).sessions).to.have.length(1);
    await untilEnded(client, a.session.id);
  });
});

describe('SDK token refresh', () => {
  let d: TestDaemon;
  const clock = new ManualClock(Date.now());
  before(async () => {
    d = await startDaemon({ clock });
  });
  after(async () => d?.stop());

  async function login() {
    const u = await buildUser(d, { withPassword: true });
    const r = await d.api.post('/v1/auth/login', { email: u.email, password: u.password });
    expect(r.status, r.text).to.equal(200);
    return { u, tokens: r.body.tokens as TokenPair };
  }

  it('trades an expired access token for a new pair once, hands it to onTokens, and retries the requests', async () => {
    const { u, tokens } = await login();
    const rotated: TokenPair[] = [];
    let refreshes = 0;
    const counting: FetchLike = (url, init) => {
      if (url.endsWith('/v1/auth/refresh')) refreshes += 1;
      return fetch(url, init);
    };
    const client = new KeenClient({
      baseUrl: d.url,
      accessToken: tokens.access_token,
      refreshToken: tokens.refresh_token,
      onTokens: (t) => void rotated.push(t),
      fetch: counting,
    });
    expect((await client.me()).user.id).to.equal(u.user.id);

    clock.advance(16 * 60_000);
    // Three requests meet the expired token at once: one refresh serves them all.
    const [me, balance, list] = await Promise.all([client.me(), client.credits.balance(), client.sessions.list()]);
    expect(me.user.id).to.equal(u.user.id);
    expect(balance.balance).to.equal(0);
    expect(list.sessions).to.deep.equal([]);
    expect(refreshes).to.equal(1);
    expect(rotated).to.have.length(1);
    expect(rotated[0]!.access_token).not.to.equal(tokens.access_token);
    expect(rotated[0]!.refresh_token).not.to.equal(tokens.refresh_token);

    // The rotated refresh token is the live one: a later expiry is renewed again.
    clock.advance(16 * 60_000);
    expect((await client.me()).user.id).to.equal(u.user.id);
    expect(refreshes).to.equal(2);
    expect(rotated[1]!.refresh_token).not.to.equal(rotated[0]!.refresh_token);
  });

  it('without a refresh token, an expired access token is an AuthenticationError TOKEN_EXPIRED', async () => {
    const { tokens } = await login();
    const client = new KeenClient({ baseUrl: d.url, accessToken: tokens.access_token });
    clock.advance(16 * 60_000);
    const err = await client.me().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(AuthenticationError);
    expect(err).to.include({ code: 'TOKEN_EXPIRED', status: 401 });
  });

  it('a dead refresh token surfaces as the refresh error, and no retry presents it twice', async () => {
    const { tokens } = await login();
    // Someone else already used this refresh token.
    expect((await d.api.post('/v1/auth/refresh', { refresh_token: tokens.refresh_token })).status).to.equal(200);
    let refreshes = 0;
    const client = new KeenClient({
      baseUrl: d.url,
      accessToken: tokens.access_token,
      refreshToken: tokens.refresh_token,
      fetch: (url, init) => {
        if (url.endsWith('/v1/auth/refresh')) refreshes += 1;
        return fetch(url, init);
      },
    });
    clock.advance(16 * 60_000);
    const err = await client.me().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(AuthenticationError);
    expect((err as AuthenticationError).code).to.equal('REFRESH_TOKEN_REUSED');
    expect(refreshes).to.equal(1);
  });
});
