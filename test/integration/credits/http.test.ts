import { expect } from 'chai';
import { sql } from 'kysely';
import { credits } from '../../../daemon/credits/money.js';
import { schemaId } from '../../../daemon/http/validation.js';
import { createAjv } from '../../../daemon/schemas.js';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { auditRows, buildApiKey, buildUser, mintToken, platformAdmin, type TestUser } from '../../helpers/factories.js';
import type { ApiResponse } from '../../helpers/http.js';

const ajv = createAjv();

/** The response matches the schema /openapi.json documents for it. */
function expectShape(r: ApiResponse, schema: string): void {
  const validate = ajv.getSchema(schemaId(schema))!;
  expect(validate(r.body), `${schema}: ${JSON.stringify(validate.errors)}\n${r.text}`).to.equal(true);
}

describeStorage('credits over HTTP: balance, transactions, grants, idempotency, verify', (backend) => {
  let d: TestDaemon;
  let root: string;

  const grant = (body: unknown, options: { token?: string; key?: string } = {}) =>
    d.api.post('/v1/admin/credits/grant', body, {
      token: options.token ?? root,
      headers: options.key ? { 'idempotency-key': options.key } : {},
    });
  const ledgerRows = (userId: string) =>
    d.container.database.db
      .selectFrom('credit_ledger')
      .selectAll()
      .where('user_id', '=', userId)
      .orderBy('seq')
      .execute();

  before(async () => {
    d = await startDaemon({ backend });
    root = mintToken(d, await platformAdmin(d));
  });
  after(async () => d?.stop());

  describe('reads', () => {
    let u: TestUser;
    before(async () => {
      u = await buildUser(d);
    });

    it('a new user has zeros; after grants and a reservation the balance reads as decimals', async () => {
      const empty = await d.api.get('/v1/credits/balance', { token: u.token });
      expect(empty.status, empty.text).to.equal(200);
      expect(empty.body).to.deep.equal({ success: true, balance: 0, reserved: 0, available: 0 });
      expect((await grant({ user_id: u.email, amount: 10, reason: 'welcome' })).status).to.equal(201);
      expect((await grant({ user_id: u.user.id, amount: 2.5, reason: 'bonus' })).status).to.equal(201);
      await d.container.ledger.reserve({
        userId: u.user.id,
        amount: credits(3),
        ttlMs: 60_000,
        actor: { type: 'user', id: u.user.id },
      });
      const b = await d.api.get('/v1/credits/balance', { token: u.token });
      expect(b.body).to.deep.equal({ success: true, balance: 12.5, reserved: 3, available: 9.5 });
      expectShape(b, 'CreditBalanceResponse');
    });

    it('lists the ledger newest first with signed decimal amounts', async () => {
      const t = await d.api.get('/v1/credits/transactions', { token: u.token });
      expect(t.status, t.text).to.equal(200);
      expectShape(t, 'CreditTransactionListResponse');
      expect(t.body.next_cursor).to.equal(null);
      expect(t.body.transactions.map((e: { kind: string }) => e.kind)).to.deep.equal(['reserve', 'grant', 'grant']);
      expect(t.body.transactions[0]).to.include({
        amount: 0,
        reserved_delta: 3,
        balance_after: 12.5,
        reserved_after: 3,
      });
      expect(t.body.transactions[1]).to.include({ amount: 2.5, balance_after: 12.5, reason: 'bonus' });
      expect(t.body.transactions[2]).to.include({ amount: 10, balance_after: 10, reason: 'welcome' });
      expect(t.body.transactions[2].id).to.match(/^txn_/);
      // No actor ids or idempotency keys reach the user.
      expect(t.text).not.to.include('actor').and.not.include('idempotency');
    });

    it('paginates with an opaque cursor, newest first, no entry twice', async () => {
      const v = await buildUser(d);
      for (let i = 1; i <= 7; i++)
        expect((await grant({ user_id: v.user.id, amount: i, reason: `grant ${i}` })).status).to.equal(201);
      const seen: number[] = [];
      let cursor: string | null = null;
      const sizes: number[] = [];
      do {
        const page: ApiResponse = await d.api.get(
          `/v1/credits/transactions?limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
          { token: v.token },
        );
        expect(page.status, page.text).to.equal(200);
        sizes.push(page.body.transactions.length);
        seen.push(...page.body.transactions.map((e: { amount: number }) => e.amount));
        cursor = page.body.next_cursor;
      } while (cursor);
      expect(sizes).to.deep.equal([3, 3, 1]);
      expect(seen).to.deep.equal([7, 6, 5, 4, 3, 2, 1]);
      const all = await d.api.get('/v1/credits/transactions', { token: v.token });
      expect(all.body.transactions).to.have.length(7);
    });

    it('refuses a malformed cursor, a limit outside 1..100 and unknown parameters with 400 INVALID_FIELD', async () => {
      for (const q of [
        'cursor=not-a-cursor',
        'cursor=eyJ4IjoxfQ',
        'limit=0',
        'limit=101',
        'limit=abc',
        'limit=1.5',
        'user_id=someone',
      ]) {
        const r = await d.api.get(`/v1/credits/transactions?${q}`, { token: u.token });
        expect(r.status, q).to.equal(400);
        expect(r.body.error.code, q).to.equal('INVALID_FIELD');
      }
      expect((await d.api.get('/v1/credits/transactions?limit=100', { token: u.token })).status).to.equal(200);
    });

    it('needs credits:read: an API key without it gets 403 INSUFFICIENT_SCOPE, one with only it reads', async () => {
      const narrow = await buildApiKey(d, u, { scopes: ['sessions:read'] });
      const r = await d.api.get('/v1/credits/balance', { apiKey: narrow.key });
      expect(r.status).to.equal(403);
      expect(r.body.error.code).to.equal('INSUFFICIENT_SCOPE');
      expect((await d.api.get('/v1/credits/transactions', { apiKey: narrow.key })).status).to.equal(403);
      const reader = await buildApiKey(d, u, { scopes: ['credits:read'] });
      expect((await d.api.get('/v1/credits/balance', { apiKey: reader.key })).body.balance).to.equal(12.5);
      expect((await d.api.get('/v1/credits/balance')).status).to.equal(401);
    });

    it('admins read any user by id or email, with the user id in the answer', async () => {
      const b = await d.api.get(`/v1/admin/credits/balance?user_id=${encodeURIComponent(u.email)}`, { token: root });
      expect(b.status, b.text).to.equal(200);
      expect(b.body).to.deep.equal({ success: true, user_id: u.user.id, balance: 12.5, reserved: 3, available: 9.5 });
      expectShape(b, 'CreditBalanceResponse');
      const t = await d.api.get(`/v1/admin/credits/transactions?user_id=${u.user.id}&limit=2`, { token: root });
      expect(t.status, t.text).to.equal(200);
      expectShape(t, 'CreditTransactionListResponse');
      expect(t.body.transactions).to.have.length(2);
      expect(t.body.next_cursor).to.be.a('string');
      const rest = await d.api.get(
        `/v1/admin/credits/transactions?user_id=${u.user.id}&cursor=${encodeURIComponent(t.body.next_cursor)}`,
        { token: root },
      );
      expect(rest.body.transactions.map((e: { reason: string }) => e.reason)).to.deep.equal(['welcome']);
      expect((await d.api.get('/v1/admin/credits/balance', { token: root })).status).to.equal(400);
      expect(
        (await d.api.get('/v1/admin/credits/balance?user_id=nobody@example.test', { token: root })).status,
      ).to.equal(404);
      expect(
        (await d.api.get('/v1/admin/credits/transactions?user_id=usr_00000000000000000000000000', { token: root }))
          .status,
      ).to.equal(404);
    });
  });

  describe('grants', () => {
    it('answers 201 with the entry and the new balance, audited with the admin as actor', async () => {
      const u = await buildUser(d);
      const r = await grant({ user_id: u.email, amount: 0.000001, reason: 'smallest unit' });
      expect(r.status, r.text).to.equal(201);
      expectShape(r, 'CreditGrantResponse');
      expect(r.body.transaction).to.include({
        kind: 'grant',
        amount: 0.000001,
        balance_after: 0.000001,
        reason: 'smallest unit',
      });
      expect(r.body.balance).to.deep.equal({ balance: 0.000001, reserved: 0, available: 0.000001 });
      expect(r.headers.get('idempotent-replayed')).to.equal(null);
      const big = await grant({ user_id: u.email, amount: 123456.789012, reason: 'exact decimals' });
      expect(big.body.balance.balance).to.equal(123456.789013);
      const rows = (await auditRows(d)).filter((a) => a.action === 'credits.grant' && a.target_id === u.user.id);
      expect(rows).to.have.length(2);
      expect(rows[0]).to.include({ actor_type: 'admin', actor_id: (await platformAdmin(d)).id, outcome: 'success' });
    });

    it('refuses bad amounts and reasons with 400, writing nothing and leaving the key unclaimed', async () => {
      const u = await buildUser(d);
      const cases: Array<[string, unknown]> = [
        ['negative', { user_id: u.user.id, amount: -5, reason: 'x' }],
        ['zero', { user_id: u.user.id, amount: 0, reason: 'x' }],
        ['a string', { user_id: u.user.id, amount: 'abc', reason: 'x' }],
        ['a numeric string', { user_id: u.user.id, amount: '5', reason: 'x' }],
        ['1e308', { user_id: u.user.id, amount: 1e308, reason: 'x' }],
        ['7 decimals', { user_id: u.user.id, amount: 0.0000001, reason: 'x' }],
        ['1.1234567', { user_id: u.user.id, amount: 1.1234567, reason: 'x' }],
        ['over 1e9', { user_id: u.user.id, amount: 1_000_000_001, reason: 'x' }],
        ['missing amount', { user_id: u.user.id, reason: 'x' }],
        ['missing reason', { user_id: u.user.id, amount: 5 }],
        ['missing user', { amount: 5, reason: 'x' }],
        ['extra field', { user_id: u.user.id, amount: 5, reason: 'x', currency: 'usd' }],
        ['empty reason', { user_id: u.user.id, amount: 5, reason: '' }],
        ['blank reason', { user_id: u.user.id, amount: 5, reason: '   ' }],
        ['control character', { user_id: u.user.id, amount: 5, reason: 'bad\u0007reason' }],
        ['newline', { user_id: u.user.id, amount: 5, reason: 'two\nlines' }],
        ['reason of 501', { user_id: u.user.id, amount: 5, reason: 'x'.repeat(501) }],
        ['array body', [{ user_id: u.user.id, amount: 5, reason: 'x' }]],
      ];
      for (const [name, body] of cases) {
        const r = await grant(body, { key: 'validation-key' });
        expect(r.status, `${name}: ${r.text}`).to.equal(400);
        expect(r.body.error.code, name).to.equal('INVALID_FIELD');
        expect(r.body.error.details, name).to.be.an('array').that.is.not.empty;
      }
      const raw = await d.api.request('POST', '/v1/admin/credits/grant', {
        token: root,
        rawBody: '{"user_id":',
        headers: { 'content-type': 'application/json' },
      });
      expect(raw.status).to.equal(400);
      expect(await ledgerRows(u.user.id)).to.deep.equal([]);
      expect(
        (await auditRows(d)).filter((a) => a.action === 'credits.grant' && a.target_id === u.user.id),
      ).to.deep.equal([]);
      // The refused requests did not claim the key: a valid grant with it goes through.
      const ok = await grant({ user_id: u.user.id, amount: 500, reason: 'x'.repeat(500) }, { key: 'validation-key' });
      expect(ok.status, ok.text).to.equal(201);
      const badKey = await grant({ user_id: u.user.id, amount: 1, reason: 'x' }, { key: 'k'.repeat(256) });
      expect(badKey.status).to.equal(400);
      expect(await ledgerRows(u.user.id)).to.have.length(1);
    });

    it('answers 404 for an unknown user and writes nothing', async () => {
      const before = await d.container.database.db
        .selectFrom('credit_ledger')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow();
      for (const who of ['nobody@example.test', 'usr_00000000000000000000000000', 'not-an-id']) {
        const r = await grant({ user_id: who, amount: 5, reason: 'x' }, { key: `unknown-${who}` });
        expect(r.status, who).to.equal(404);
        expect(r.body.error.code).to.equal('NOT_FOUND');
      }
      const after = await d.container.database.db
        .selectFrom('credit_ledger')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow();
      expect(Number(after.n)).to.equal(Number(before.n));
    });

    it('without a key, two identical grants are two grants', async () => {
      const u = await buildUser(d);
      await grant({ user_id: u.user.id, amount: 1, reason: 'twice' });
      const second = await grant({ user_id: u.user.id, amount: 1, reason: 'twice' });
      expect(second.body.balance.balance).to.equal(2);
      expect(await ledgerRows(u.user.id)).to.have.length(2);
    });
  });

  describe('Idempotency-Key on grants', () => {
    it('10 concurrent retries with one key grant exactly once and all answer the same', async () => {
      const u = await buildUser(d);
      const body = { user_id: u.email, amount: 7.25, reason: 'retried grant' };
      // Each client retries while the first request is still in flight (409 IN_USE), as a careful client does.
      const attempt = async (): Promise<ApiResponse> => {
        for (let i = 0; i < 200; i++) {
          const r = await grant(body, { key: 'concurrent-grant-1' });
          if (!(r.status === 409 && r.body.error.code === 'IDEMPOTENCY_KEY_IN_USE')) return r;
          expect(r.headers.get('retry-after')).to.equal('1');
          await new Promise((resolve) => setTimeout(resolve, 10 + Math.random() * 20));
        }
        throw new Error('key stayed in use');
      };
      const responses = await Promise.all(Array.from({ length: 10 }, attempt));
      for (const r of responses) {
        expect(r.status, r.text).to.equal(201);
        expect(r.body).to.deep.equal(responses[0]!.body);
      }
      expect(responses.filter((r) => r.headers.get('idempotent-replayed') === 'true')).to.have.length(9);
      const rows = await ledgerRows(u.user.id);
      expect(rows).to.have.length(1);
      expect(Number(rows[0]!.amount)).to.equal(credits(7) + 250_000);
      expect((await d.api.get('/v1/credits/balance', { token: u.token })).body.balance).to.equal(7.25);
      expect(
        (await auditRows(d)).filter((a) => a.action === 'credits.grant' && a.target_id === u.user.id),
      ).to.have.length(1);

      // A later retry (keys in another order: the same request) replays too.
      const later = await grant(
        { reason: 'retried grant', amount: 7.25, user_id: u.email },
        { key: 'concurrent-grant-1' },
      );
      expect(later.status).to.equal(201);
      expect(later.headers.get('idempotent-replayed')).to.equal('true');
      expect(later.body).to.deep.equal(responses[0]!.body);
    });

    it('the same key with another amount or user is 409 IDEMPOTENCY_KEY_REUSED and changes nothing', async () => {
      const u = await buildUser(d);
      const v = await buildUser(d);
      expect((await grant({ user_id: u.user.id, amount: 3, reason: 'first' }, { key: 'reused-key' })).status).to.equal(
        201,
      );
      for (const body of [
        { user_id: u.user.id, amount: 4, reason: 'first' },
        { user_id: u.user.id, amount: 3, reason: 'second' },
        { user_id: v.user.id, amount: 3, reason: 'first' },
      ]) {
        const r = await grant(body, { key: 'reused-key' });
        expect(r.status, r.text).to.equal(409);
        expect(r.body.error.code).to.equal('IDEMPOTENCY_KEY_REUSED');
      }
      expect(await ledgerRows(u.user.id)).to.have.length(1);
      expect(await ledgerRows(v.user.id)).to.have.length(0);
    });

    it('keys are scoped per admin: another admin may use the same key', async () => {
      const u = await buildUser(d);
      const other = await buildUser(d, { role: 'admin', tier: 'enterprise' });
      const body = { user_id: u.user.id, amount: 1, reason: 'per admin' };
      expect((await grant(body, { key: 'shared-key' })).status).to.equal(201);
      const r = await grant(body, { key: 'shared-key', token: other.token });
      expect(r.status).to.equal(201);
      expect(r.headers.get('idempotent-replayed')).to.equal(null);
      expect(await ledgerRows(u.user.id)).to.have.length(2);
    });

    it('a lost stored response (daemon died mid-request) still cannot grant twice: the ledger keeps the key too', async () => {
      const u = await buildUser(d);
      const body = { user_id: u.user.id, amount: 9, reason: 'crash-safe' };
      const first = await grant(body, { key: 'crash-key' });
      expect(first.status).to.equal(201);
      await d.container.database.db.deleteFrom('idempotency_keys').where('key', '=', 'crash-key').execute();
      const again = await grant(body, { key: 'crash-key' });
      expect(again.status).to.equal(201);
      expect(again.headers.get('idempotent-replayed')).to.equal('true');
      expect(again.body.transaction).to.deep.equal(first.body.transaction);
      expect(await ledgerRows(u.user.id)).to.have.length(1);
    });
  });

  describe('verify (last: it tampers with a balance)', () => {
    it('is clean after everything above', async () => {
      const r = await d.api.post('/v1/admin/credits/verify', {}, { token: root });
      expect(r.status, r.text).to.equal(200);
      expectShape(r, 'CreditVerifyResponse');
      expect(r.body).to.deep.equal({ success: true, ok: true, mismatches: [] });
    });

    it('reports a balance row changed behind the ledger, in credits', async () => {
      const u = await buildUser(d);
      await grant({ user_id: u.user.id, amount: 10, reason: 'before tampering' });
      await sql`UPDATE credit_accounts SET balance = balance + 1500000 WHERE user_id = ${u.user.id}`.execute(
        d.container.database.db,
      );
      try {
        const r = await d.api.post('/v1/admin/credits/verify', {}, { token: root });
        expect(r.status).to.equal(200);
        expectShape(r, 'CreditVerifyResponse');
        expect(r.body.ok).to.equal(false);
        expect(r.body.mismatches.every((m: { user_id: string }) => m.user_id === u.user.id)).to.equal(true);
        expect(r.body.mismatches).to.deep.include({
          user_id: u.user.id,
          check: 'balance',
          expected: 10,
          actual: 11.5,
          unit: 'credits',
          message: 'balance differs from the sum of ledger amounts',
        });
      } finally {
        await sql`UPDATE credit_accounts SET balance = balance - 1500000 WHERE user_id = ${u.user.id}`.execute(
          d.container.database.db,
        );
      }
      expect((await d.api.post('/v1/admin/credits/verify', {}, { token: root })).body.ok).to.equal(true);
    });
  });

  it('/openapi.json documents every credit endpoint and shape', async () => {
    const doc = (await d.api.get('/openapi.json')).body;
    expect(doc.paths['/v1/credits/balance'].get.responses['200'].content['application/json'].schema.$ref).to.equal(
      '#/components/schemas/CreditBalanceResponse',
    );
    expect(doc.paths['/v1/credits/transactions'].get.parameters.map((p: { name: string }) => p.name)).to.deep.equal([
      'limit',
      'cursor',
    ]);
    const g = doc.paths['/v1/admin/credits/grant'].post;
    expect(g.requestBody.content['application/json'].schema.$ref).to.equal('#/components/schemas/CreditGrantRequest');
    expect(g.responses['201']).to.exist;
    expect(g.responses['409'].description).to.include('IDEMPOTENCY_KEY_REUSED');
    expect(doc.paths['/v1/admin/credits/balance'].get).to.exist;
    expect(doc.paths['/v1/admin/credits/transactions'].get).to.exist;
    expect(doc.paths['/v1/admin/credits/verify'].post.responses['200']).to.exist;
    for (const name of [
      'CreditBalance',
      'CreditTransaction',
      'CreditGrantResponse',
      'CreditMismatch',
      'CreditVerifyResponse',
    ]) {
      expect(doc.components.schemas[name], name).to.be.an('object');
    }
  });
});
