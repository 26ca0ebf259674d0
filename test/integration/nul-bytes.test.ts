import { expect } from 'chai';
import net from 'node:net';
import WebSocket from 'ws';
import type { RouteSpec } from '../../daemon/http/routes.js';
import { loadSchemas } from '../../daemon/schemas.js';
import { describeStorage } from '../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { buildUser, type TestUser } from '../helpers/factories.js';
import { closeClients, connect, refused } from './stream/support.js';

const NUL = '\u0000';

/**
 * A valid body per body schema: each string in it is sent once with a NUL in it.
 * A route whose body schema is not here fails the coverage test below, so a new
 * route cannot slip past this suite.
 */
const BODIES: Record<string, Record<string, unknown>> = {
  LoginRequest: { email: 'nobody@example.com', password: 'correct horse battery', mfa_token: '123456' },
  RefreshRequest: { refresh_token: `rt_${'a'.repeat(43)}` },
  PasswordChangeRequest: { current_password: 'correct horse battery', new_password: 'another long passphrase' },
  MfaTokenRequest: { token: '123456' },
  ApiKeyCreateRequest: { name: 'ci key', scopes: ['sessions:read'], expires_at: '2099-01-01T00:00:00Z' },
  AdminUserCreateRequest: {
    email: 'new-user@example.com',
    password: 'correct horse battery',
    tier: 'team',
    tenant_id: 'ten_01jabc',
    role: 'member',
  },
  SetTierRequest: { tier: 'team' },
  LogoutAllRequest: { revoke_api_keys: false },
  TenantCreateRequest: { name: 'Acme' },
  AdminApiKeyCreateRequest: {
    user_id: 'someone@example.com',
    name: 'ci key',
    scopes: ['sessions:read'],
    expires_at: '2099-01-01T00:00:00Z',
  },
  ApiKeyUpdateRequest: { name: 'ci key', scopes: ['sessions:read'], expires_at: '2099-01-01T00:00:00Z' },
  ApiKeyRollRequest: { grace_seconds: 60 },
  BudgetRequest: { amount: 5, period: 'day' },
  WebhookEndpointCreateRequest: {
    url: 'https://hooks.example.com/keen',
    event_types: ['session.completed'],
    description: 'ci',
  },
  WebhookEndpointUpdateRequest: { url: 'https://hooks.example.com/keen', event_types: ['ping'], description: 'ci' },
  WebhookSecretRotateRequest: { grace_seconds: 60 },
  CreditGrantRequest: { user_id: 'someone@example.com', amount: 1, reason: 'welcome credits' },
  CreditAdjustRequest: { user_id: 'someone@example.com', amount: -1, reason: 'correction' },
  CreditRefundRequest: { amount: 1, reason: 'partial outage' },
  TenantCreditGrantRequest: { amount: 1, reason: 'pool top-up' },
  ExecuteRequest: { vision: 'Build a tiny command line tool', webhook_url: 'https://hooks.example.com/keen' },
};

/** A valid value per query parameter name (every query schema's properties are read from the schema itself). */
const QUERY_VALUES: Record<string, string> = {
  limit: '10',
  cursor: 'abc',
  email: 'someone@example.com',
  user_id: 'usr_01jabc',
  status: 'running',
  after: '0',
  action: 'auth.login',
  actor_id: 'usr_01jabc',
  tenant_id: 'ten_01jabc',
  outcome: 'success',
  since: '2020-01-01T00:00:00Z',
  until: '2030-01-01T00:00:00Z',
  order: 'asc',
  after_seq: '0',
  subject: 'api_key',
  group_by: 'day',
  time_zone: 'UTC',
  api_key_id: 'key_01jabc',
  format: 'json',
};

/** Every string leaf of a value, by the dotted field name the API reports (`scopes.0`). */
function stringLeaves(value: unknown, at = ''): Array<{ field: string; path: Array<string | number> }> {
  if (typeof value === 'string') return [{ field: at, path: [] }];
  if (Array.isArray(value))
    return value.flatMap((v, i) =>
      stringLeaves(v, at ? `${at}.${i}` : String(i)).map((l) => ({ ...l, path: [i, ...l.path] })),
    );
  if (value && typeof value === 'object') {
    return Object.entries(value).flatMap(([k, v]) =>
      stringLeaves(v, at ? `${at}.${k}` : k).map((l) => ({ ...l, path: [k, ...l.path] })),
    );
  }
  return [];
}

/** A deep copy of `value` with a NUL put in the middle of the string at `path`. */
function withNul(value: unknown, path: Array<string | number>): unknown {
  const copy = structuredClone(value) as Record<string | number, unknown>;
  let node = copy;
  for (const k of path.slice(0, -1)) node = node[k] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  const s = node[last] as string;
  node[last] = `${s.slice(0, 1)}${NUL}${s.slice(1)}`;
  return copy;
}

const pathOf = (r: RouteSpec, param?: string): string =>
  r.path.replace(/:([A-Za-z_]+)/g, (_, name: string) =>
    name === param ? encodeURIComponent(`x${NUL}y`) : name === 'id' ? idFor(r.path) : 'abc',
  );

/** A well-formed id of the kind the path takes. */
function idFor(path: string): string {
  if (path.includes('/sessions/')) return 'ses_01j0000000000000000000000';
  if (path.includes('/api-keys/')) return 'key_01j0000000000000000000000';
  return 'usr_01j0000000000000000000000';
}

/**
 * `\u0000` in any string a request carries (body, query string, path parameter,
 * stream URL and messages) is refused with 400 INVALID_FIELD naming the field,
 * before it reaches a store: Postgres text cannot hold it and answered 500 with
 * a stack in the log. The same answer on SQLite.
 */
describeStorage('NUL characters in request strings', (backend) => {
  let d: TestDaemon;
  let admin: TestUser;
  const schemas = loadSchemas();

  before(async () => {
    d = await startDaemon({ backend });
    admin = await buildUser(d, { role: 'admin', tier: 'enterprise' });
  });
  after(async () => d?.stop());
  afterEach(() => closeClients());

  /** The request, bounded (a stream route that wrongly accepted the request would never end). */
  async function send(method: string, path: string, body?: unknown) {
    const headers: Record<string, string> = { authorization: `Bearer ${admin.token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(d.url + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(5000),
    });
    const text = await res.text();
    let json: any = null;
    try {
      json = JSON.parse(text);
    } catch {
      // the assertion below shows the text
    }
    return { status: res.status, json, text };
  }

  /** Sends, then checks the answer: 400 INVALID_FIELD naming `field`, and no error in the log. */
  async function expectRefused(
    what: string,
    method: string,
    path: string,
    body: unknown,
    field: string,
    problems: string[],
  ): Promise<void> {
    const before = d.logs.length;
    let r;
    try {
      r = await send(method, path, body);
    } catch (err) {
      problems.push(`${what}: ${(err as Error).message}`);
      return;
    }
    const errorLines = d.logs.slice(before).filter((l) => /"level":"(error|fatal)"/.test(l));
    if (r.status !== 400 || r.json?.error?.code !== 'INVALID_FIELD')
      problems.push(`${what}: ${r.status} ${r.text.slice(0, 200)}`);
    else if (
      !(r.json.error.details as Array<{ field: string; message: string }>).some(
        (p) => p.field === field && /NUL/.test(p.message),
      )
    ) {
      problems.push(`${what}: details do not name ${field} as holding NUL: ${JSON.stringify(r.json.error.details)}`);
    }
    if (errorLines.length > 0) problems.push(`${what}: logged an error: ${errorLines[0]!.slice(0, 300)}`);
  }

  it('covers every route that takes a body or a query string', () => {
    const routes = d.container.routes;
    const missing = routes.filter((r) => r.body && !BODIES[r.body]).map((r) => `${r.method} ${r.path}: body ${r.body}`);
    for (const r of routes.filter((x) => x.query)) {
      const props = Object.keys((schemas.get(r.query!) as { properties?: Record<string, unknown> }).properties ?? {});
      for (const p of props) if (!(p in QUERY_VALUES)) missing.push(`${r.method} ${r.path}: query ${p}`);
    }
    expect(missing).to.deep.equal([]);
    expect(routes.filter((r) => r.body).length).to.be.greaterThan(10);
    expect(routes.filter((r) => r.query).length).to.be.greaterThan(8);
  });

  it('refuses a NUL in each string of each body with 400 INVALID_FIELD naming it', async function () {
    this.timeout(120_000);
    const problems: string[] = [];
    let cases = 0;
    for (const r of d.container.routes.filter((x) => x.body)) {
      const sample = BODIES[r.body!]!;
      for (const leaf of stringLeaves(sample)) {
        cases++;
        await expectRefused(
          `${r.method} ${r.path} body ${leaf.field}`,
          r.method,
          pathOf(r),
          withNul(sample, leaf.path),
          leaf.field,
          problems,
        );
      }
    }
    // A NUL in a member's name, too.
    await expectRefused(
      'POST /v1/agents/execute body key',
      'POST',
      '/v1/agents/execute',
      { [`vision${NUL}`]: 'Build a tiny command line tool' },
      `vision${NUL}`,
      problems,
    );
    expect(cases).to.be.greaterThan(25);
    expect(problems.join('\n')).to.equal('');
  });

  it('refuses a NUL in each query parameter with 400 INVALID_FIELD naming it', async function () {
    this.timeout(120_000);
    const problems: string[] = [];
    for (const r of d.container.routes.filter((x) => x.query)) {
      const schema = schemas.get(r.query!) as { properties?: Record<string, unknown>; required?: string[] };
      for (const name of Object.keys(schema.properties ?? {})) {
        const params = new URLSearchParams();
        for (const req of schema.required ?? []) if (req !== name) params.set(req, QUERY_VALUES[req]!);
        const v = QUERY_VALUES[name]!;
        params.set(name, `${v.slice(0, 1)}${NUL}${v.slice(1)}`);
        await expectRefused(
          `${r.method} ${r.path}?${name}`,
          r.method,
          `${pathOf(r)}?${params}`,
          undefined,
          name,
          problems,
        );
      }
    }
    expect(problems.join('\n')).to.equal('');
  });

  it('refuses a NUL in each path parameter with 400 INVALID_FIELD naming it', async function () {
    this.timeout(60_000);
    const problems: string[] = [];
    const withParams = d.container.routes.filter((r) => /:[A-Za-z_]+/.test(r.path));
    expect(withParams.length).to.be.greaterThan(5);
    for (const r of withParams) {
      for (const [, name] of r.path.matchAll(/:([A-Za-z_]+)/g)) {
        await expectRefused(
          `${r.method} ${r.path} :${name}`,
          r.method,
          pathOf(r, name),
          r.body ? BODIES[r.body] : undefined,
          name!,
          problems,
        );
      }
    }
    expect(problems.join('\n')).to.equal('');
  });

  it('a NUL in a header (Idempotency-Key, ...) never reaches the application: the HTTP parser answers 400', async () => {
    const { hostname, port } = new URL(d.url);
    const before = d.logs.length;
    const raw = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(Number(port), hostname, () =>
        sock.write(
          `POST /v1/admin/credits/grant HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${admin.token}\r\nIdempotency-Key: a${NUL}b\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`,
        ),
      );
      let out = '';
      sock.on('data', (chunk) => (out += String(chunk)));
      sock.on('end', () => resolve(out));
      sock.on('error', reject);
      sock.setTimeout(5000, () => sock.destroy(new Error('timeout')));
    });
    expect(raw).to.match(/^HTTP\/1\.1 400 /);
    expect(d.logs.slice(before).filter((l) => /"level":"(error|fatal)"/.test(l))).to.deep.equal([]);
  });

  it('the stream refuses a NUL in its URL parameters and its subscribe messages', async () => {
    for (const query of [
      `sessions=ses_${encodeURIComponent(NUL)}`,
      `sessions=ses_a,b${encodeURIComponent(NUL)}`,
      `after=1${encodeURIComponent(NUL)}`,
    ]) {
      const before = d.logs.length;
      const r = await refused(d, { token: admin.token, query });
      expect(r.status, query).to.equal(400);
      expect(r.body.error.code, query).to.equal('INVALID_FIELD');
      expect(r.body.error.message, query).to.match(/NUL/);
      expect(d.logs.slice(before).filter((l) => /"level":"(error|fatal)"/.test(l))).to.deep.equal([]);
    }
    // Credentials in the URL with a NUL: refused before any lookup.
    for (const query of [`ticket=t${encodeURIComponent(NUL)}`, `token=a${encodeURIComponent(NUL)}b`]) {
      const r = await refused(d, { query });
      expect(r.status, query).to.equal(400);
      expect(r.body.error.code, query).to.equal('INVALID_FIELD');
    }

    const before = d.logs.length;
    const c = await connect(d, { token: admin.token, query: 'sessions=' });
    c.send({ type: 'subscribe', session_id: `ses_01j${NUL}` });
    c.send({ type: 'unsubscribe', session_id: `ses_01j${NUL}` });
    c.send({ type: 'subscribe', session_id: 'ses_01j0000000000000000000000', after: 0, [`x${NUL}`]: 1 });
    await c.until((m) => m.filter((x) => x.type === 'error').length >= 3, 5000, 'three errors');
    const errors = c.errors();
    expect(errors.map((e) => e.error.code)).to.deep.equal(['INVALID_FIELD', 'INVALID_FIELD', 'INVALID_FIELD']);
    expect(errors[0]!.error.message).to.match(/session_id.*NUL/);
    expect(errors[1]!.error.message).to.match(/session_id.*NUL/);
    // The connection stays usable.
    expect(c.ws.readyState).to.equal(WebSocket.OPEN);
    expect(d.logs.slice(before).filter((l) => /"level":"(error|fatal)"/.test(l))).to.deep.equal([]);
  });
});
