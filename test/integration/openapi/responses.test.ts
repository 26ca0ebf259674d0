import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { statfsSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getHttpOperationsFromSpec } from '@stoplight/prism-http';
import { validateOutput } from '@stoplight/prism-http/dist/validator/index.js';
import { totpNow } from '../../../daemon/auth/totp.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildUser, platformAdmin, mintToken, type TestUser } from '../../helpers/factories.js';
import { waitForEnd } from '../../helpers/sessions.js';

type IHttpOperation = Awaited<ReturnType<typeof getHttpOperationsFromSpec>>[number];

type DocResponse = { $ref?: string; headers?: Record<string, unknown> };
type Doc = {
  paths: Record<string, Record<string, { responses: Record<string, DocResponse> }>>;
  components: { responses: Record<string, DocResponse> };
};

/** Headers HTTP itself puts on a response; every other one must be declared by the document. */
const TRANSPORT_HEADERS = new Set([
  'content-type',
  'content-length',
  'date',
  'connection',
  'keep-alive',
  'transfer-encoding',
]);

interface Call {
  /** Credentials: an access token, or an API key. */
  token?: string;
  apiKey?: string;
  path?: Record<string, string>;
  query?: string;
  /** JSON body; `raw` sends bytes as they are with `contentType`. */
  body?: unknown;
  raw?: string;
  contentType?: string;
  headers?: Record<string, string>;
  /** The status the call must answer with (or one of several, where the outcome may vary). */
  expect: number | number[];
  /** Read only the first chunk, then hang up (the live audit feed never ends by itself). */
  firstChunkOnly?: boolean;
}

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: any;
  text: string;
}

/**
 * Every operation of the document a real daemon serves at /openapi.json, called for real
 * (a success where one can be made, else a documented error), each answer checked by
 * Stoplight Prism's own response validator (@stoplight/prism-http validateOutput: the
 * status is declared, the media type and the body match, the declared headers are present
 * and match their schemas), plus one check Prism does not make: no header beyond the
 * transport's own is left undeclared. Fails if any operation was not called.
 */
describe('real responses satisfy GET /openapi.json (Prism validator), headers included', function () {
  this.timeout(120_000);
  let d: TestDaemon;
  let doc: Doc;
  let operations: Map<string, IHttpOperation>;
  const exercised = new Map<string, Set<number>>();
  const problems: string[] = [];

  before(async () => {
    d = await startDaemon({ logLevel: 'warn', config: { webhooks: { allow_private_targets: true } } });
    const r = await fetch(`${d.url}/openapi.json`);
    doc = (await r.json()) as Doc;
    operations = new Map(
      (await getHttpOperationsFromSpec(structuredClone(doc))).map((op) => [
        `${op.method.toUpperCase()} ${op.path}`,
        op,
      ]),
    );
  });
  after(async () => d?.stop());

  /** Calls one operation on `daemon`, validates the answer, records the operation as exercised. */
  async function call(method: string, template: string, c: Call, daemon: TestDaemon = d): Promise<Answer> {
    const id = `${method} ${template}`;
    const op = operations.get(id);
    if (!op) throw new Error(`${id} is not in /openapi.json`);
    const url =
      template.replace(/\{([A-Za-z_]+)\}/g, (_, k: string) => encodeURIComponent(c.path?.[k] ?? '')) +
      (c.query ? `?${c.query}` : '');
    const headers: Record<string, string> = { ...c.headers };
    if (c.token) headers.authorization = `Bearer ${c.token}`;
    if (c.apiKey) headers.authorization = `ApiKey ${c.apiKey}`;
    let body: string | undefined;
    if (c.raw !== undefined) {
      body = c.raw;
      headers['content-type'] = c.contentType ?? 'application/json';
    } else if (c.body !== undefined) {
      body = JSON.stringify(c.body);
      headers['content-type'] = 'application/json';
    }
    const abort = new AbortController();
    const res = await fetch(daemon.url + url, { method, headers, body, signal: abort.signal });
    let text: string;
    if (c.firstChunkOnly) {
      const reader = res.body!.getReader();
      const chunk = await reader.read();
      text = new TextDecoder().decode(chunk.value);
      abort.abort();
      await reader.cancel().catch(() => undefined);
    } else text = await res.text();
    const answer: Answer = { status: res.status, headers: Object.fromEntries(res.headers), body: text, text };
    const type = answer.headers['content-type'] ?? '';
    if (/^application\/(.+\+)?json/.test(type) && text.length > 0) answer.body = JSON.parse(text);

    const wanted = Array.isArray(c.expect) ? c.expect : [c.expect];
    if (!wanted.includes(res.status))
      problems.push(`${id}: answered ${res.status}, expected ${wanted.join(' or ')}: ${text.slice(0, 300)}`);
    const result = validateOutput({
      resource: op,
      element: { statusCode: res.status, headers: answer.headers, body: answer.body },
    });
    if (result._tag === 'Left') {
      // Errors and warnings alike (an undeclared 4xx status is only a warning to Prism).
      for (const v of result.left.filter((x) => x.severity <= 1))
        problems.push(`${id} ${res.status}: ${v.path?.join('.') ?? ''} ${v.message}`);
    }
    let declaredResponse = doc.paths[template]![method.toLowerCase()]!.responses[String(res.status)];
    if (declaredResponse?.$ref) declaredResponse = doc.components.responses[declaredResponse.$ref.split('/').pop()!];
    const declared = new Set(Object.keys(declaredResponse?.headers ?? {}).map((h) => h.toLowerCase()));
    for (const h of Object.keys(answer.headers)) {
      if (!TRANSPORT_HEADERS.has(h) && !declared.has(h))
        problems.push(`${id} ${res.status}: header ${h} is not declared`);
    }
    if (!exercised.has(id)) exercised.set(id, new Set());
    exercised.get(id)!.add(res.status);
    return answer;
  }

  /** This test's problems (and none left for the next). */
  const ok = () => expect(problems.splice(0)).to.deep.equal([]);

  it('health, metrics and the document itself', async () => {
    await call('GET', '/health/live', { expect: 200 });
    await call('GET', '/health/ready', { expect: 200 });
    await call('GET', '/metrics', { expect: 200 });
    await call('GET', '/openapi.json', { expect: 200 });
    ok();
  });

  let member: TestUser;
  let admin: TestUser;

  it('sign-in, refresh, MFA, sign-out, password; /v1/me', async () => {
    const pa = await platformAdmin(d);
    admin = { user: pa, email: pa.email, password: '', token: mintToken(d, pa) };
    member = await buildUser(d, { tier: 'team' });
    const u = await buildUser(d, { withPassword: true });
    const login = await call('POST', '/v1/auth/login', { body: { email: u.email, password: u.password }, expect: 200 });
    const refreshed = await call('POST', '/v1/auth/refresh', {
      body: { refresh_token: login.body.tokens.refresh_token },
      expect: 200,
    });
    const access = refreshed.body.tokens.access_token as string;
    await call('GET', '/v1/me', { token: member.token, expect: 200 });
    const setup = await call('POST', '/v1/auth/mfa/setup', { token: access, expect: 200 });
    const enabled = await call('POST', '/v1/auth/mfa/enable', {
      token: access,
      body: { token: totpNow(setup.body.secret, Date.now()) },
      expect: 200,
    });
    await call('POST', '/v1/auth/mfa/disable', {
      token: access,
      body: { token: enabled.body.recovery_codes[0] },
      expect: 200,
    });
    await call('POST', '/v1/auth/logout', {
      token: access,
      body: { refresh_token: refreshed.body.tokens.refresh_token },
      expect: 200,
    });
    // Without a body (it is optional).
    const again = await call('POST', '/v1/auth/login', { body: { email: u.email, password: u.password }, expect: 200 });
    await call('POST', '/v1/auth/logout-all', { token: again.body.tokens.access_token, expect: 200 });
    const v = await buildUser(d, { withPassword: true });
    await call('POST', '/v1/auth/password', {
      token: v.token,
      body: { current_password: v.password, new_password: 'another long passphrase 42' },
      expect: 200,
    });
    ok();
  });

  it("a user's own API keys and their budgets", async () => {
    const t = member.token;
    await call('GET', '/v1/api-keys', { token: t, expect: 200 });
    const created = await call('POST', '/v1/api-keys', { token: t, body: { name: 'openapi test' }, expect: 201 });
    const id = created.body.api_key.id as string;
    await call('PATCH', '/v1/api-keys/{id}', { token: t, path: { id }, body: { name: 'openapi test 2' }, expect: 200 });
    await call('POST', '/v1/api-keys/{id}/roll', { token: t, path: { id }, expect: 200 });
    await call('PUT', '/v1/api-keys/{id}/budget', {
      token: t,
      path: { id },
      body: { amount: 5, period: 'day' },
      expect: 200,
    });
    await call('GET', '/v1/budgets', { token: t, expect: 200 });
    await call('DELETE', '/v1/api-keys/{id}/budget', { token: t, path: { id }, expect: 200 });
    await call('DELETE', '/v1/api-keys/{id}', { token: t, path: { id }, expect: 200 });
    ok();
  });

  let tenantId: string;

  it('administration: tenants, users, their keys and budgets', async () => {
    const t = admin.token;
    tenantId = (
      await call('POST', '/v1/admin/tenants', {
        token: t,
        body: { name: `openapi-${randomUUID().slice(0, 8)}` },
        expect: 201,
      })
    ).body.tenant.id;
    await call('GET', '/v1/admin/tenants', { token: t, expect: 200 });
    const email = `openapi-${randomUUID().slice(0, 8)}@example.test`;
    const user = (
      await call('POST', '/v1/admin/users', {
        token: t,
        body: { email, tier: 'individual', tenant_id: tenantId, role: 'member' },
        expect: 201,
      })
    ).body.user;
    const path = { id: user.id as string };
    await call('GET', '/v1/admin/users', { token: t, query: 'limit=5', expect: 200 });
    await call('GET', '/v1/admin/users/{id}', { token: t, path, expect: 200 });
    await call('POST', '/v1/admin/users/{id}/suspend', { token: t, path, expect: 200 });
    await call('POST', '/v1/admin/users/{id}/activate', { token: t, path, expect: 200 });
    await call('POST', '/v1/admin/users/{id}/tier', { token: t, path, body: { tier: 'team' }, expect: 200 });
    // No MFA to reset: a documented 409.
    await call('POST', '/v1/admin/users/{id}/reset-mfa', { token: t, path, expect: [200, 409] });
    await call('POST', '/v1/admin/users/{id}/unlock', { token: t, path, expect: 200 });
    await call('PUT', '/v1/admin/users/{id}/budget', {
      token: t,
      path,
      body: { amount: 10, period: 'month' },
      expect: 200,
    });
    await call('DELETE', '/v1/admin/users/{id}/budget', { token: t, path, expect: 200 });
    await call('PUT', '/v1/admin/tenants/{id}/budget', {
      token: t,
      path: { id: tenantId },
      body: { amount: 100, period: 'month' },
      expect: 200,
    });
    await call('DELETE', '/v1/admin/tenants/{id}/budget', { token: t, path: { id: tenantId }, expect: 200 });
    const key = (
      await call('POST', '/v1/admin/api-keys', { token: t, body: { user_id: email, name: 'admin-made' }, expect: 201 })
    ).body.api_key;
    const kp = { id: key.id as string };
    await call('GET', '/v1/admin/api-keys', { token: t, query: `user_id=${encodeURIComponent(email)}`, expect: 200 });
    await call('PATCH', '/v1/admin/api-keys/{id}', { token: t, path: kp, body: { name: 'admin-made 2' }, expect: 200 });
    await call('POST', '/v1/admin/api-keys/{id}/roll', { token: t, path: kp, body: {}, expect: 200 });
    await call('PUT', '/v1/admin/api-keys/{id}/budget', {
      token: t,
      path: kp,
      body: { amount: 1, period: 'total' },
      expect: 200,
    });
    await call('DELETE', '/v1/admin/api-keys/{id}/budget', { token: t, path: kp, expect: 200 });
    await call('GET', '/v1/admin/budgets', { token: t, expect: 200 });
    await call('DELETE', '/v1/admin/api-keys/{id}', { token: t, path: kp, expect: 200 });
    ok();
  });

  it('credits: pools, grants (replayed with Idempotency-Key), adjust, reads, verify, usage as JSON and CSV', async () => {
    const t = admin.token;
    const poolKey = randomUUID();
    const pool = {
      token: t,
      path: { id: tenantId },
      body: { amount: 20, reason: 'pool top-up' },
      headers: { 'Idempotency-Key': poolKey },
      expect: 201,
    };
    const first = await call('POST', '/v1/admin/tenants/{id}/credits/grant', pool);
    expect(first.headers['idempotent-replayed']).to.equal(undefined);
    const replay = await call('POST', '/v1/admin/tenants/{id}/credits/grant', pool);
    expect(replay.headers['idempotent-replayed']).to.equal('true');
    await call('GET', '/v1/admin/tenants/{id}/credits', { token: t, path: { id: tenantId }, expect: 200 });
    await call('GET', '/v1/admin/credits/pools', { token: t, expect: 200 });
    const grant = {
      token: t,
      body: { user_id: member.email, amount: 50, reason: 'openapi test' },
      headers: { 'Idempotency-Key': randomUUID() },
      expect: 201,
    };
    await call('POST', '/v1/admin/credits/grant', grant);
    expect((await call('POST', '/v1/admin/credits/grant', grant)).headers['idempotent-replayed']).to.equal('true');
    await call('POST', '/v1/admin/credits/adjust', {
      token: t,
      body: { user_id: member.email, amount: -1, reason: 'correction' },
      headers: { 'Idempotency-Key': randomUUID() },
      expect: 201,
    });
    await call('GET', '/v1/admin/credits/balance', {
      token: t,
      query: `user_id=${encodeURIComponent(member.email)}`,
      expect: 200,
    });
    await call('GET', '/v1/admin/credits/transactions', {
      token: t,
      query: `user_id=${encodeURIComponent(member.email)}`,
      expect: 200,
    });
    await call('POST', '/v1/admin/credits/verify', { token: t, expect: 200 });
    await call('GET', '/v1/credits/balance', { token: member.token, expect: 200 });
    await call('GET', '/v1/credits/transactions', { token: member.token, expect: 200 });
    await call('GET', '/v1/usage', { token: member.token, expect: 200 });
    const csv = await call('GET', '/v1/usage', { token: member.token, query: 'format=csv', expect: 200 });
    expect(csv.headers['content-type']).to.match(/^text\/csv/);
    await call('GET', '/v1/admin/usage', { token: t, query: 'group_by=user', expect: 200 });
    await call('GET', '/v1/admin/usage', { token: t, headers: { accept: 'text/csv' }, expect: 200 });
    ok();
  });

  it('agents and sessions: quote, execute (Idempotency-Key), reads, cancel, refund, stream ticket', async () => {
    const t = member.token;
    const vision = 'Do some work and report usage [iterations:2]';
    await call('POST', '/v1/agents/quote', { token: t, body: { vision, options: { costBudget: 2 } }, expect: 200 });
    const run = await call('POST', '/v1/agents/execute', {
      token: t,
      body: { vision, options: { costBudget: 2 } },
      headers: { 'Idempotency-Key': randomUUID() },
      expect: 200,
    });
    const id = run.body.session.id as string;
    await waitForEnd(d, member, id);
    await call('GET', '/v1/sessions', { token: t, expect: 200 });
    await call('GET', '/v1/sessions/{id}', { token: t, path: { id }, expect: 200 });
    await call('GET', '/v1/sessions/{id}/events', { token: t, path: { id }, query: 'after=0', expect: 200 });
    await call('GET', '/v1/admin/sessions', { token: admin.token, expect: 200 });
    await call('POST', '/v1/admin/sessions/{id}/refund', {
      token: admin.token,
      path: { id },
      body: { reason: 'openapi test' },
      headers: { 'Idempotency-Key': randomUUID() },
      expect: 201,
    });
    // It has ended: a documented 409 INVALID_STATE.
    await call('POST', '/v1/sessions/{id}/cancel', { token: t, path: { id }, expect: 409 });
    // Slow runs, cancelled while they run: by their user, then by an administrator.
    for (const [who, template] of [
      [t, '/v1/sessions/{id}/cancel'],
      [admin.token, '/v1/admin/sessions/{id}/cancel'],
    ] as const) {
      const slow = await call('POST', '/v1/agents/execute', {
        token: t,
        body: { vision: 'Take your time about it [slow:20000]', options: { costBudget: 1 } },
        expect: 200,
      });
      await call('POST', template, { token: who, path: { id: slow.body.session.id }, expect: 200 });
      await waitForEnd(d, member, slow.body.session.id);
    }
    await call('POST', '/v1/stream/tickets', { token: t, expect: 201 });
    ok();
  });

  it('webhooks: secret, event types, endpoints, ping, deliveries, resend', async () => {
    const t = member.token;
    const receiver = createServer((_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    await call('GET', '/v1/webhooks/secret', { token: t, expect: 200 });
    await call('GET', '/v1/webhooks/event-types', { token: t, expect: 200 });
    const created = await call('POST', '/v1/webhooks/endpoints', {
      token: t,
      body: { url: hook, event_types: ['ping'], description: 'openapi' },
      expect: 201,
    });
    const id = created.body.endpoint.id as string;
    await call('GET', '/v1/webhooks/endpoints', { token: t, expect: 200 });
    await call('GET', '/v1/webhooks/endpoints/{id}', { token: t, path: { id }, expect: 200 });
    await call('PATCH', '/v1/webhooks/endpoints/{id}', {
      token: t,
      path: { id },
      body: { description: 'openapi 2' },
      expect: 200,
    });
    await call('POST', '/v1/webhooks/endpoints/{id}/rotate-secret', { token: t, path: { id }, expect: 200 });
    const ping = await call('POST', '/v1/webhooks/endpoints/{id}/ping', { token: t, path: { id }, expect: 202 });
    const delivery = ping.body.delivery.id as string;
    // Sent (and answered 200): a delivered message can be sent again.
    await d.container.webhooks.deliverDueNow();
    await call('GET', '/v1/webhooks/endpoints/{id}/deliveries', { token: t, path: { id }, expect: 200 });
    await call('GET', '/v1/webhooks/endpoints/{id}/deliveries/{delivery_id}', {
      token: t,
      path: { id, delivery_id: delivery },
      expect: 200,
    });
    await call('POST', '/v1/webhooks/endpoints/{id}/deliveries/{delivery_id}/resend', {
      token: t,
      path: { id, delivery_id: delivery },
      expect: 202,
    });
    await call('GET', '/v1/admin/webhooks/endpoints', { token: admin.token, expect: 200 });
    await call('DELETE', '/v1/webhooks/endpoints/{id}', { token: t, path: { id }, expect: 200 });
    receiver.close();
    ok();
  });

  it('the audit log: list, live feed (JSON Lines), verify, export (JSON Lines)', async () => {
    const t = admin.token;
    await call('GET', '/v1/admin/audit', { token: t, query: 'limit=5', expect: 200 });
    const feed = await call('GET', '/v1/admin/audit/stream', { token: t, firstChunkOnly: true, expect: 200 });
    expect(feed.headers['content-type']).to.match(/^application\/x-ndjson/);
    expect(JSON.parse(feed.text.split('\n')[0]!)).to.include({ type: 'heartbeat' });
    await call('POST', '/v1/admin/audit/verify', { token: t, expect: 200 });
    const lines = await call('GET', '/v1/admin/audit/export', { token: t, expect: 200 });
    expect(lines.headers['content-type']).to.match(/^application\/x-ndjson/);
    for (const line of lines.text.split('\n').filter(Boolean)) JSON.parse(line);
    ok();
  });

  it('documented errors the middleware answers: 401, 403 to an API key on a Bearer-only route, 400, 404, 413, 415, 429 with Retry-After', async () => {
    await call('GET', '/v1/me', { expect: 401 });
    const key = await call('POST', '/v1/api-keys', {
      token: member.token,
      body: { name: 'limited', rate_limit_per_hour: 1 },
      expect: 201,
    });
    const apiKey = key.body.key as string;
    await call('GET', '/v1/api-keys', { apiKey, expect: 403 });
    // The key's one request an hour is spent: the next is 429 RATE_LIMITED with Retry-After and the RateLimit headers.
    const limited = await call('GET', '/v1/me', { apiKey, expect: 429 });
    expect(limited.headers['retry-after']).to.match(/^[1-9][0-9]*$/);
    expect(limited.headers.ratelimit).to.match(/^"api_key";r=0;t=\d+$/);
    await call('GET', '/v1/sessions', { token: member.token, query: 'limit=abc', expect: 400 });
    await call('GET', '/v1/sessions/{id}', { token: member.token, path: { id: 'ses_nope' }, expect: 404 });
    await call('POST', '/v1/agents/quote', {
      token: member.token,
      raw: 'vision=hello',
      contentType: 'text/plain',
      expect: 415,
    });
    await call('DELETE', '/v1/api-keys/{id}', {
      token: member.token,
      path: { id: 'key_nope' },
      raw: 'x',
      contentType: 'text/plain',
      expect: 415,
    });
    await call('POST', '/v1/auth/login', {
      raw: JSON.stringify({ email: 'a@example.test', password: 'x'.repeat(d.config.server.body_limit_bytes) }),
      expect: 413,
    });
    await call('POST', '/v1/auth/login', { raw: '{"email":', expect: 400 });
    ok();
  });

  it('429 on a public /v1/ route (per address, before sign-in): POST /v1/auth/refresh; 503 with Retry-After from readiness', async () => {
    // One request an hour per address, and 1 TiB of free disk wanted (readiness fails).
    const small = await startDaemon({
      logLevel: 'error',
      config: { limits: { ip_requests_per_hour: 1 }, server: { min_free_disk_mb: 1_048_576 } },
    });
    try {
      const disk = statfsSync(small.home.dataDir);
      if (disk.bavail * disk.bsize < 1024 ** 4) {
        const notReady = await call('GET', '/health/ready', { expect: 503 }, small);
        expect(notReady.headers['retry-after']).to.equal('1');
      }
      await call('POST', '/v1/auth/refresh', { body: { refresh_token: `rt_${'a'.repeat(43)}` }, expect: 401 }, small);
      const r = await call(
        'POST',
        '/v1/auth/refresh',
        { body: { refresh_token: `rt_${'a'.repeat(43)}` }, expect: 429 },
        small,
      );
      expect(r.headers['retry-after']).to.match(/^[1-9][0-9]*$/);
      expect(r.headers['ratelimit-policy']).to.match(/^"ip";q=1;w=3600$/);
    } finally {
      await small.stop();
    }
    ok();
  });

  it('routes outside the request limit carry no RateLimit headers; the limited ones always do on a success', () => {
    for (const [p, ops] of Object.entries(doc.paths)) {
      for (const [m, op] of Object.entries(ops)) {
        const success = Object.entries(op.responses).find(([s]) => s.startsWith('2'))![1];
        expect(success.$ref, `${m} ${p}`).to.equal(undefined);
        const limited = p.startsWith('/v1/');
        expect(Object.keys(success.headers ?? {}).includes('RateLimit'), `${m} ${p}`).to.equal(limited);
      }
    }
  });

  it('every operation of the document was called', () => {
    const all = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`));
    expect(all.length).to.be.greaterThan(70);
    expect(all.filter((id) => !exercised.has(id))).to.deep.equal([]);
  });
});
