import { expect } from 'chai';
import { answerOnce } from '../../../daemon/http/answer-once.js';
import type { AppContext } from '../../../daemon/http/context.js';
import { defineRoute, RAW } from '../../../daemon/http/routes.js';
import type { IdempotencyStore, StoredResponse } from '../../../daemon/idempotency/store.js';

/** Just what a handler and answerOnce touch of a Koa context. */
function fakeContext(headers: Record<string, string> = {}) {
  const set: Record<string, string> = {};
  const ctx = {
    status: 404,
    body: undefined as unknown,
    request: { body: { name: 'x' } },
    query: {},
    get: (name: string) => headers[name] ?? '',
    set: (name: string, value: string) => {
      set[name] = value;
    },
  };
  return { ctx, set, asApp: ctx as unknown as AppContext };
}

const meta = { method: 'GET', path: '/x', summary: 'x', tag: 'x', auth: 'none' } as const;

describe('routes: the envelope is added once, at the edge (daemon/http/routes.ts)', () => {
  it('answers a payload as {"success": true, ...payload}, success first', async () => {
    const tenant = { id: 't', name: 'n', created_at: 'c' };
    const response = { status: 200, schema: 'TenantResponse' } as const;
    const spec = defineRoute({ ...meta, response, handler: () => ({ tenant }) });
    const { ctx, asApp } = fakeContext();
    await spec.handler(asApp);
    expect(JSON.stringify(ctx.body)).to.equal('{"success":true,"tenant":{"id":"t","name":"n","created_at":"c"}}');
  });

  it('answers an empty payload as {"success": true}', async () => {
    const spec = defineRoute({ ...meta, response: { status: 200, schema: 'OkResponse' }, handler: async () => ({}) });
    const { ctx, asApp } = fakeContext();
    await spec.handler(asApp);
    expect(ctx.body).to.deep.equal({ success: true });
  });

  it('leaves a body the handler set itself alone: RAW (CSV, text), or no response schema', async () => {
    const csv = defineRoute({
      ...meta,
      response: { status: 200, schema: 'UsageReportResponse' },
      handler: (ctx) => {
        ctx.body = 'a,b\n';
        return RAW;
      },
    });
    const text = defineRoute({
      ...meta,
      response: { status: 200 },
      handler: (ctx) => {
        ctx.body = 'metrics 1\n';
      },
    });
    for (const [spec, body] of [
      [csv, 'a,b\n'],
      [text, 'metrics 1\n'],
    ] as const) {
      const { ctx, asApp } = fakeContext();
      await spec.handler(asApp);
      expect(ctx.body).to.equal(body);
    }
  });

  it('hands the handler the validated body and keeps the spec the router and /openapi.json read', async () => {
    let seen: unknown;
    const spec = defineRoute({
      ...meta,
      method: 'POST',
      body: 'TenantCreateRequest',
      response: { status: 201, schema: 'OkResponse' },
      errors: ['ALREADY_EXISTS'],
      handler: (ctx) => {
        seen = ctx.request.body.name;
        return {};
      },
    });
    expect(spec).to.include({ body: 'TenantCreateRequest', method: 'POST' });
    expect(spec.errors).to.deep.equal(['ALREADY_EXISTS']);
    await spec.handler(fakeContext().asApp);
    expect(seen).to.equal('x');
  });
});

describe('routes: types come from the schemas a spec names (checked by the type check)', () => {
  it('refuses a payload that is not the response schema, an unknown error code, a field the body lacks', () => {
    defineRoute({
      ...meta,
      response: { status: 200, schema: 'TenantResponse' },
      // @ts-expect-error: TenantResponse needs a tenant
      handler: () => ({ user: null }),
    });
    defineRoute({
      ...meta,
      response: { status: 200, schema: 'OkResponse' },
      // @ts-expect-error: not an ErrorCode
      errors: ['NO_SUCH_CODE'],
      handler: () => ({}),
    });
    defineRoute({
      ...meta,
      body: 'TenantCreateRequest',
      response: { status: 200, schema: 'OkResponse' },
      handler: (ctx) => {
        // @ts-expect-error: TenantCreateRequest has no email
        void ctx.request.body.email;
        return {};
      },
    });
    // @ts-expect-error: not a schema under schemas/api/
    defineRoute({ ...meta, body: 'NoSuchSchema', response: { status: 200 }, handler: () => undefined });
  });
});

describe('answerOnce: a money write stores its whole answer and the edge does not wrap it twice', () => {
  /** An idempotency store that keeps answers in memory (what the transaction stores). */
  function memoryStore() {
    const stored = new Map<string, StoredResponse<unknown>>();
    const store = {
      run: async (_user: string, key: string, _hash: string, fn: () => Promise<StoredResponse<unknown>>) => {
        const earlier = stored.get(key);
        if (earlier) return { ...earlier, replayed: true };
        const r = await fn();
        stored.set(key, r);
        return { ...r, replayed: false };
      },
    };
    return { stored, store: store as unknown as IdempotencyStore };
  }

  it('stores {"success": true, ...}, and a replay answers the same bytes with Idempotent-Replayed', async () => {
    const { stored, store } = memoryStore();
    const tenant = { id: 't', name: 'n', created_at: 'c' };
    const spec = defineRoute({
      ...meta,
      method: 'POST',
      response: { status: 201, schema: 'TenantResponse' },
      handler: (ctx) =>
        answerOnce(ctx, store, 'usr_1', { r: 1 }, async () => ({ status: 201, body: { tenant }, replayed: false })),
    });
    const first = fakeContext({ 'Idempotency-Key': 'k-0000000001' });
    await spec.handler(first.asApp);
    const wire = '{"success":true,"tenant":{"id":"t","name":"n","created_at":"c"}}';
    expect(JSON.stringify(first.ctx.body)).to.equal(wire);
    expect(JSON.stringify(stored.get('k-0000000001')?.body)).to.equal(wire);
    expect(first.ctx.status).to.equal(201);
    const retry = fakeContext({ 'Idempotency-Key': 'k-0000000001' });
    await spec.handler(retry.asApp);
    expect(JSON.stringify(retry.ctx.body)).to.equal(wire);
    expect(retry.set['Idempotent-Replayed']).to.equal('true');
  });
});
