import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../../../daemon/paths.js';
import { ERROR_CODES } from '../../../daemon/errors.js';
import { errorCodesOf } from '../../../daemon/http/openapi.js';
import { isRateLimited, type RouteSpec } from '../../../daemon/http/routes.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';

type Operation = {
  operationId: string;
  summary: string;
  security?: Array<Record<string, string[]>>;
  parameters?: Array<{ name: string; in: string; required: boolean }>;
  requestBody?: { content: Record<string, { schema: { $ref: string } }> };
  responses: Record<string, Response>;
};
type Response = {
  $ref?: string;
  description: string;
  headers?: Record<string, { $ref?: string; required?: boolean }>;
  content?: Record<string, { schema: { $ref?: string } }>;
};

const statusOf = (code: string): number => (ERROR_CODES as Record<string, readonly [string, number]>)[code]![1];

/**
 * Every route the daemon registers is in /openapi.json with its method, path
 * parameters, body, security and responses: the success status with its schema,
 * and one error response per status the route can answer.
 */
describe('GET /openapi.json documents every registered route', () => {
  let d: TestDaemon;
  let doc: {
    paths: Record<string, Record<string, Operation>>;
    components: {
      schemas: Record<string, unknown>;
      responses: Record<string, Response>;
      securitySchemes: Record<string, unknown>;
    };
    security: unknown;
  };
  let routes: RouteSpec[];

  before(async () => {
    d = await startDaemon({ logLevel: 'warn' });
    doc = (await d.api.get('/openapi.json')).body;
    routes = d.container.routes;
  });
  after(async () => d?.stop());

  const opOf = (r: RouteSpec): Operation | undefined =>
    doc.paths[r.path.replace(/:([A-Za-z_]+)/g, '{$1}')]?.[r.method.toLowerCase()];
  /** A response, its $ref (a shared error response in components/responses) followed. */
  const resolve = (res: Response | undefined): Response | undefined =>
    res?.$ref ? doc.components.responses[res.$ref.replace('#/components/responses/', '')] : res;

  it('is OpenAPI 3.1 with both credential schemes, and lists the same operations as the router', () => {
    expect((doc as unknown as { openapi: string }).openapi).to.equal('3.1.0');
    expect(Object.keys(doc.components.securitySchemes).sort()).to.deep.equal(['apiKeyAuth', 'bearerAuth']);
    expect(doc.security).to.deep.equal([{ bearerAuth: [] }, { apiKeyAuth: [] }]);
    expect(routes.length).to.be.greaterThan(35);
    const documented = Object.entries(doc.paths)
      .flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`))
      .sort();
    const registered = routes.map((r) => `${r.method} ${r.path.replace(/:([A-Za-z_]+)/g, '{$1}')}`).sort();
    expect(documented).to.deep.equal(registered);
  });

  it('states each operation’s security: public ones none, bearer-only ones bearer, the rest either credential', () => {
    const wrong: string[] = [];
    for (const r of routes) {
      const op = opOf(r)!;
      const expected = r.auth === 'none' ? [] : r.auth === 'bearer' ? [{ bearerAuth: [] }] : undefined;
      // `undefined`: inherits the document's [{bearerAuth}, {apiKeyAuth}].
      if (JSON.stringify(op.security) !== JSON.stringify(expected))
        wrong.push(`${r.method} ${r.path}: ${JSON.stringify(op.security)}`);
    }
    expect(wrong).to.deep.equal([]);
  });

  it('lists path parameters, the body schema and the query parameters', () => {
    for (const r of routes) {
      const op = opOf(r)!;
      const pathParams = [...r.path.matchAll(/:([A-Za-z_]+)/g)].map((m) => m[1]);
      expect(
        (op.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name),
        `${r.method} ${r.path}`,
      ).to.deep.equal(pathParams);
      if (r.body)
        expect(op.requestBody?.content['application/json']?.schema.$ref).to.equal(`#/components/schemas/${r.body}`);
      else expect(op.requestBody, `${r.method} ${r.path}`).to.equal(undefined);
      if (r.query)
        expect((op.parameters ?? []).filter((p) => p.in === 'query').length, `${r.method} ${r.path}`).to.be.greaterThan(
          0,
        );
      expect(op.summary).to.equal(r.summary);
      expect(op.operationId).to.match(/^[a-z][A-Za-z0-9]+$/);
    }
  });

  it('documents the success response with its schema, and every error status the route can answer', () => {
    const problems: string[] = [];
    for (const r of routes) {
      const op = opOf(r)!;
      const id = `${r.method} ${r.path}`;
      const ok = op.responses[String(r.response.status)];
      if (!ok) problems.push(`${id}: no ${r.response.status}`);
      else if (r.response.schema) {
        const ref = Object.values(ok.content ?? {})[0]?.schema.$ref;
        if (ref !== `#/components/schemas/${r.response.schema}`) problems.push(`${id}: success schema ${ref}`);
        if (!doc.components.schemas[r.response.schema]) problems.push(`${id}: component ${r.response.schema} missing`);
      }
      const statuses = new Set<number>([500, 400, ...(r.errors ?? []).map(statusOf)]);
      if (r.auth !== 'none') statuses.add(401);
      if (isRateLimited(r)) statuses.add(429).add(503);
      if (r.scope || r.policy || r.auth === 'bearer') statuses.add(403);
      // The body parser answers on every body method, whether the route reads a body or not.
      if (r.body || ['POST', 'PUT', 'PATCH', 'DELETE'].includes(r.method)) statuses.add(413).add(415);
      if (r.idempotent) statuses.add(409);
      for (const s of statuses) {
        const res = resolve(op.responses[String(s)]);
        if (!res) problems.push(`${id}: no ${s} response`);
        else if (res.content?.['application/json']?.schema.$ref !== '#/components/schemas/ErrorEnvelope')
          problems.push(`${id}: ${s} is not the error envelope`);
      }
    }
    expect(problems).to.deep.equal([]);
  });

  it('declares the headers the middleware sets: X-Request-Id and the security headers everywhere, RateLimit on limited routes, Retry-After, Idempotency', () => {
    const problems: string[] = [];
    const headers = (doc.components as unknown as { headers: Record<string, unknown> }).headers;
    for (const name of [
      'X-Request-Id',
      'X-Content-Type-Options',
      'X-Frame-Options',
      'Referrer-Policy',
      'Content-Security-Policy',
      'Cross-Origin-Resource-Policy',
      'Cache-Control',
      'RateLimit-Policy',
      'RateLimit',
      'X-RateLimit-Limit',
      'X-RateLimit-Remaining',
      'X-RateLimit-Reset',
      'Retry-After',
      'Idempotent-Replayed',
    ]) {
      if (!headers[name]) problems.push(`components/headers/${name} missing`);
    }
    for (const r of routes) {
      const op = opOf(r)!;
      const id = `${r.method} ${r.path}`;
      for (const [status, res] of Object.entries(op.responses)) {
        const h = resolve(res)?.headers ?? {};
        if (h['X-Request-Id']?.$ref !== '#/components/headers/X-Request-Id')
          problems.push(`${id} ${status}: no X-Request-Id`);
        if (!h['X-Content-Type-Options']) problems.push(`${id} ${status}: no security headers`);
        if (isRateLimited(r) !== Boolean(h.RateLimit))
          problems.push(
            `${id} ${status}: RateLimit ${h.RateLimit ? 'declared on a route outside the limit' : 'missing'}`,
          );
        const always = status.startsWith('2') || status === '429';
        if (isRateLimited(r) && always && h['RateLimit-Policy']?.$ref !== '#/components/headers/RateLimit-Policy')
          problems.push(`${id} ${status}: RateLimit-Policy not required`);
        if (['429', '503', '507'].includes(status) && h['Retry-After']?.$ref !== '#/components/headers/Retry-After')
          problems.push(`${id} ${status}: no Retry-After`);
        if (status.startsWith('2') && Boolean(r.idempotent) !== Boolean(h['Idempotent-Replayed']))
          problems.push(`${id} ${status}: Idempotent-Replayed`);
      }
      const key = (op.parameters ?? []).find((p) => p.in === 'header' && p.name === 'Idempotency-Key');
      if (Boolean(r.idempotent) !== Boolean(key))
        problems.push(`${id}: Idempotency-Key parameter ${key ? 'declared but not honoured' : 'missing'}`);
    }
    // The routes that honour Idempotency-Key are the ones docs/API.md's "Idempotency" paragraph names.
    const md = readFileSync(path.join(PROJECT_ROOT, 'docs/API.md'), 'utf8');
    const para = /\*\*Idempotency\.\*\*([\s\S]*?)honor an/.exec(md)![1]!;
    const named = [...para.matchAll(/`(POST|PUT|PATCH|DELETE) ([^`]+)`/g)].map((m) => `${m[1]} ${m[2]}`).sort();
    expect(
      routes
        .filter((r) => r.idempotent)
        .map((r) => `${r.method} ${r.path}`)
        .sort(),
    ).to.deep.equal(named);
    expect(problems).to.deep.equal([]);
  });

  it('every $ref points at a component that exists', () => {
    const refs = [...JSON.stringify(doc).matchAll(/"#\/components\/(schemas|responses|headers)\/([A-Za-z0-9-]+)/g)].map(
      (m) => [m[1]!, m[2]!] as const,
    );
    expect(refs.length).to.be.greaterThan(0);
    const components = doc.components as unknown as Record<string, Record<string, unknown>>;
    expect(refs.filter(([kind, n]) => !components[kind]?.[n]).map(([kind, n]) => `${kind}/${n}`)).to.deep.equal([]);
  });

  it("docs/API.md's errors row of each route lists exactly the codes /openapi.json declares for it", () => {
    const md = readFileSync(path.join(PROJECT_ROOT, 'docs/API.md'), 'utf8');
    const wrong: string[] = [];
    for (const r of routes) {
      const at = md.indexOf(`#### \`${r.method} ${r.path}\``);
      if (at < 0) continue; // the next test names it
      const row = /^\| errors \| (.*) \|$/m.exec(md.slice(at, md.indexOf('\n#### ', at + 1) >>> 0))?.[1];
      const expected = [...errorCodesOf(r)]
        .map((c) => [statusOf(c), c] as const)
        .sort((a, b) => a[0] - b[0] || a[1].localeCompare(b[1]))
        .map(([s, c]) => `${s} ${c}`)
        .join(', ');
      if (row !== expected) wrong.push(`${r.method} ${r.path}: | errors | ${expected} |`);
    }
    expect(wrong).to.deep.equal([]);
  });

  it('docs/API.md has a section and a curl example for every route, and every error code in its table', () => {
    const md = readFileSync(path.join(PROJECT_ROOT, 'docs/API.md'), 'utf8');
    const missing: string[] = [];
    for (const r of routes) {
      const at = md.indexOf(`#### \`${r.method} ${r.path}\``);
      if (at < 0) missing.push(`${r.method} ${r.path}: no section`);
      else if (!md.slice(at, md.indexOf('\n#### ', at + 1) >>> 0).includes('curl '))
        missing.push(`${r.method} ${r.path}: no curl example`);
    }
    for (const [code, [type, status]] of Object.entries(ERROR_CODES)) {
      if (!md.includes(`| ${type} | \`${code}\` | ${status} |`)) missing.push(`error table: ${type} ${code} ${status}`);
    }
    expect(missing).to.deep.equal([]);
  });
});
