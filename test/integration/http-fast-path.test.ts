import { expect } from 'chai';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { buildUser } from '../helpers/factories.js';

/**
 * The read path's shortcuts (daemon/http/app.ts, staticRoutes; the security headers set at once;
 * the HTTP and rate-limit counters added when read): a request taken by the shortcut is guarded,
 * limited, labelled and answered exactly as through the router, and so is every other spelling.
 */
describe('HTTP fast path', () => {
  let d: TestDaemon;
  let token: string;
  before(async () => {
    d = await startDaemon({ logLevel: 'warn' });
    token = (await buildUser(d, { tier: 'team' })).token;
  });
  after(async () => d?.stop());

  const SECURITY = {
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
    'cross-origin-resource-policy': 'same-origin',
    'cache-control': 'no-store',
  };
  const expectSecurity = (headers: Headers) => {
    for (const [name, value] of Object.entries(SECURITY)) expect(headers.get(name), name).to.equal(value);
  };

  it('sets every documented security header on successes, errors and unmatched paths', async () => {
    for (const r of [
      await d.api.get('/v1/credits/balance', { token }),
      await d.api.get('/v1/credits/balance'),
      await d.api.get('/v1/no/such/route'),
      await d.api.get(`/v1/sessions/ses_${'0'.repeat(26)}`, { token }),
      await d.api.delete('/health/live'),
    ]) {
      expectSecurity(r.headers);
      expect(r.headers.get('x-request-id')).to.be.a('string');
    }
  });

  it('guards the shortcut and every other spelling of its path alike (attacker: no token, odd spellings)', async () => {
    for (const p of ['/v1/credits/balance', '/V1/Credits/Balance', '/v1/credits/balance/', '/v1/credits/balance?x=1']) {
      const r = await d.api.get(p);
      expect(r.status, p).to.equal(401);
      expect(r.body.error.code, p).to.equal('MISSING_TOKEN');
    }
    for (const p of ['/v1/credits/balance', '/V1/Credits/Balance', '/v1/credits/balance/']) {
      const r = await d.api.get(p, { token });
      expect(r.status, p).to.equal(200);
      expect(r.body.success, p).to.equal(true);
      expect(r.headers.get('ratelimit-policy'), p).to.match(/^"user";q=\d+;w=3600$/);
      expect(r.headers.get('x-ratelimit-remaining'), p).to.match(/^\d+$/);
    }
  });

  it('answers a wrong method on a shortcut path with 405 and Allow, and HEAD like GET', async () => {
    const r = await d.api.post('/v1/credits/balance', {}, { token });
    expect(r.status).to.equal(405);
    expect(r.headers.get('allow')).to.include('GET');
    const head = await fetch(`${d.url}/v1/credits/balance`, {
      method: 'HEAD',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(head.status).to.equal(200);
  });

  it('labels the shortcut with its route template, and the counters include every request before a scrape', async () => {
    const before = await d.api.get('/metrics');
    const count = (text: string, re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
    const ok = /keen_http_requests_total\{method="GET",route="\/v1\/credits\/balance",status="200"\} (\d+)/;
    const allowed = /keen_ratelimit_decisions_total\{policy="user",outcome="allowed"\} (\d+)/;
    for (let i = 0; i < 3; i++) expect((await d.api.get('/v1/credits/balance', { token })).status).to.equal(200);
    const after = await d.api.get('/metrics');
    expect(count(after.text, ok) - count(before.text, ok)).to.equal(3);
    expect(count(after.text, allowed) - count(before.text, allowed)).to.equal(3);
    expect(after.text).to.match(
      /keen_http_request_duration_seconds_count\{method="GET",route="\/v1\/credits\/balance",status="200"\} \d+/,
    );
  });
});
