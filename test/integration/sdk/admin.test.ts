import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import {
  AuthenticationError,
  AuthorizationError,
  ConflictError,
  InsufficientCreditsError,
  KeenError,
  NotFoundError,
  type KeenClient,
} from '../../../sdk/src/index.js';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildApiKey, buildUser, uniqueEmail, type TestUser } from '../../helpers/factories.js';
import { grant, waitForEnd } from '../../helpers/sessions.js';
import { scriptedServer, sdk } from './support.js';
import * as generator from '../../../scripts/gen-types.js';

/** The error a promise rejects with (fails the test when it resolves). */
async function rejection(p: Promise<unknown>): Promise<KeenError> {
  const outcome = await p.then(
    (v) => ({ v }),
    (e: unknown) => ({ e }),
  );
  if (!('e' in outcome)) throw new Error(`expected a rejection, got ${JSON.stringify(outcome.v)}`);
  expect(outcome.e).to.be.instanceOf(KeenError);
  return outcome.e as KeenError;
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** The admin endpoints the typed methods wrap, with the schemas their types come from. */
const ADMIN_ENDPOINTS: Array<[method: string, path: string, request: string | null, response: string]> = [
  ['post', '/v1/admin/users', 'AdminUserCreateRequest', 'UserResponse'],
  ['get', '/v1/admin/users', null, 'UserListResponse'],
  ['get', '/v1/admin/users/{id}', null, 'UserResponse'],
  ['post', '/v1/admin/users/{id}/suspend', null, 'UserResponse'],
  ['post', '/v1/admin/users/{id}/activate', null, 'UserResponse'],
  ['post', '/v1/admin/users/{id}/tier', 'SetTierRequest', 'UserResponse'],
  ['post', '/v1/admin/users/{id}/reset-mfa', null, 'UserResponse'],
  ['post', '/v1/admin/users/{id}/unlock', null, 'UserResponse'],
  ['post', '/v1/admin/tenants', 'TenantCreateRequest', 'TenantResponse'],
  ['post', '/v1/admin/api-keys', 'AdminApiKeyCreateRequest', 'ApiKeyCreatedResponse'],
  ['get', '/v1/admin/api-keys', null, 'ApiKeyListResponse'],
  ['patch', '/v1/admin/api-keys/{id}', 'ApiKeyUpdateRequest', 'ApiKeyResponse'],
  ['post', '/v1/admin/api-keys/{id}/roll', 'ApiKeyRollRequest', 'ApiKeyRolledResponse'],
  ['delete', '/v1/admin/api-keys/{id}', null, 'ApiKeyResponse'],
  ['post', '/v1/admin/credits/grant', 'CreditGrantRequest', 'CreditGrantResponse'],
  ['post', '/v1/admin/credits/adjust', 'CreditAdjustRequest', 'CreditAdjustResponse'],
  ['get', '/v1/admin/credits/balance', null, 'CreditBalanceResponse'],
  ['get', '/v1/admin/credits/transactions', null, 'CreditTransactionListResponse'],
  ['post', '/v1/admin/credits/verify', null, 'CreditVerifyResponse'],
  ['get', '/v1/admin/sessions', null, 'SessionListResponse'],
  ['post', '/v1/admin/sessions/{id}/cancel', null, 'SessionResponse'],
  ['post', '/v1/admin/sessions/{id}/refund', 'CreditRefundRequest', 'CreditRefundResponse'],
  ['get', '/v1/admin/audit', null, 'AuditListResponse'],
  ['post', '/v1/admin/audit/verify', null, 'AuditVerifyResponse'],
];

describeStorage('SDK: the admin API through typed methods', (backend) => {
  let d: TestDaemon;
  /** A platform admin, through an API key (admin calls take keys, unlike client.apiKeys). */
  let root: KeenClient;
  /** A tenant admin of `tenantId`, through an API key. */
  let tenantAdmin: KeenClient;
  let tenantAdminUser: TestUser;
  let tenantId: string;
  let tenantName: string;
  /** A member of the tenant, and a user outside it. */
  let member: TestUser;
  let outsider: TestUser;

  before(async () => {
    d = await startDaemon({ backend });
    const platform = await buildUser(d, { role: 'admin', tier: 'enterprise' });
    root = sdk(d, { apiKey: (await buildApiKey(d, platform, { name: 'ops' })).key });
    tenantName = `Acme ${randomBytes(4).toString('hex')}`;
    tenantId = (await root.tenants.create({ name: tenantName })).id;
    tenantAdminUser = await buildUser(d, { role: 'admin', tier: 'team', tenantId });
    tenantAdmin = sdk(d, { apiKey: (await buildApiKey(d, tenantAdminUser, { name: 'tenant ops' })).key });
    member = await buildUser(d, { tenantId });
    outsider = await buildUser(d);
  });
  after(async () => d?.stop());

  it('the daemon declares the schemas the admin methods are typed with, and the SDK generates them', async () => {
    const { SDK_SCHEMAS } = generator;
    const spec = (await d.api.get('/openapi.json')).body;
    const ref = (s: { $ref?: string } | undefined) => s?.$ref?.replace('#/components/schemas/', '');
    for (const [method, path, request, response] of ADMIN_ENDPOINTS) {
      const op = spec.paths[path]?.[method];
      expect(op, `${method.toUpperCase()} ${path} is not in the daemon's API`).to.be.an('object');
      const ok = Object.entries(
        op.responses as Record<string, { content?: Record<string, { schema?: { $ref?: string } }> }>,
      ).find(([status]) => status.startsWith('2'));
      expect(ref(ok?.[1].content?.['application/json']?.schema), `${method} ${path} response`).to.equal(response);
      if (request)
        expect(ref(op.requestBody?.content?.['application/json']?.schema), `${method} ${path} body`).to.equal(request);
      for (const name of [request, response]) if (name) expect(SDK_SCHEMAS, name).to.include(name);
    }
  });

  describe('users', () => {
    it('create, get (id or email), list, all, setTier, suspend, activate, resetMfa, unlock', async () => {
      const email = uniqueEmail('sdk-admin');
      const created = await root.users.create({ email, tier: 'team', tenant_id: tenantId, role: 'member' });
      expect(created).to.include({ email, tier: 'team', role: 'member', tenant_id: tenantId, status: 'active' });
      expect(created.id).to.match(/^usr_/);
      expect((await root.users.get(email)).id).to.equal(created.id);
      expect((await root.users.get(created.id)).email).to.equal(email);

      const byEmail = await root.users.list({ email });
      expect(byEmail.users.map((u) => u.id)).to.deep.equal([created.id]);
      const page = await root.users.list({ limit: 1 });
      expect(page.users).to.have.length(1);
      expect(page.next_cursor).to.be.a('string');
      const everyone = await collect(root.users.all({ limit: 2 }));
      expect(everyone.map((u) => u.id)).to.include.members([created.id, member.user.id, outsider.user.id]);
      expect(new Set(everyone.map((u) => u.id)).size).to.equal(everyone.length);

      expect((await root.users.setTier(email, 'enterprise')).tier).to.equal('enterprise');
      expect((await root.users.suspend(email)).status).to.equal('suspended');
      expect((await root.users.activate(created.id)).status).to.equal('active');
      expect((await root.users.resetMfa(email)).mfa_enabled).to.equal(false);
      expect((await root.users.unlock(email)).id).to.equal(created.id);

      const dup = await rejection(root.users.create({ email }));
      expect(dup).to.be.instanceOf(ConflictError);
      expect(dup.code).to.equal('ALREADY_EXISTS');
      expect(await rejection(root.users.get(uniqueEmail('nobody')))).to.be.instanceOf(NotFoundError);
    });

    it('a suspended user is refused at once; activate lets them back in', async () => {
      const u = await buildUser(d);
      const asUser = sdk(d, { accessToken: u.token });
      expect((await asUser.me()).user.id).to.equal(u.user.id);
      await root.users.suspend(u.user.id);
      expect(await rejection(asUser.me())).to.be.instanceOf(AuthenticationError);
      await root.users.activate(u.email);
      expect((await root.users.get(u.email)).status).to.equal('active');
    });

    it('a tenant admin reaches its tenant only: creates members there, an outsider is NotFoundError, a higher tier is refused', async () => {
      const email = uniqueEmail('sdk-tenant');
      const created = await tenantAdmin.users.create({ email, tier: 'team' });
      expect(created.tenant_id).to.equal(tenantId);
      const mine = await collect(tenantAdmin.users.all());
      expect(mine.every((u) => u.tenant_id === tenantId)).to.equal(true);
      expect(mine.map((u) => u.id)).to.include.members([created.id, member.user.id]);
      expect(await rejection(tenantAdmin.users.get(outsider.email))).to.be.instanceOf(NotFoundError);
      expect(await rejection(tenantAdmin.users.suspend(outsider.user.id))).to.be.instanceOf(NotFoundError);
      const higher = await rejection(tenantAdmin.users.setTier(member.email, 'enterprise'));
      expect(higher).to.be.instanceOf(AuthorizationError);
      expect(higher.code).to.equal('FORBIDDEN');
    });

    it('a credential without the admin scope gets AuthorizationError INSUFFICIENT_SCOPE', async () => {
      const asMember = sdk(d, { apiKey: (await buildApiKey(d, member, { name: 'member' })).key });
      const err = await rejection(asMember.users.list());
      expect(err).to.be.instanceOf(AuthorizationError);
      expect(err).to.include({ code: 'INSUFFICIENT_SCOPE', status: 403 });
    });
  });

  describe('tenants', () => {
    it('create and list; a name in use is ConflictError; a tenant admin cannot create one', async () => {
      const name = `Initech ${randomBytes(4).toString('hex')}`;
      const t = await root.tenants.create({ name });
      expect(t.id).to.match(/^ten_/);
      expect(t.name).to.equal(name);
      expect((await collect(root.tenants.all({ limit: 1 }))).map((x) => x.id)).to.include.members([t.id, tenantId]);
      expect(await rejection(root.tenants.create({ name }))).to.be.instanceOf(ConflictError);
      const refused = await rejection(tenantAdmin.tenants.create({ name: `${name} 2` }));
      expect(refused).to.be.instanceOf(AuthorizationError);
      expect(refused.code).to.equal('FORBIDDEN');
      expect((await tenantAdmin.tenants.list()).tenants.map((x) => x.id)).to.deep.equal([tenantId]);
    });
  });

  describe('adminKeys', () => {
    it('create for a user (by email) with a budget, list by user, update, roll, revoke', async () => {
      const u = await buildUser(d);
      const created = await root.adminKeys.create({
        user_id: u.email,
        name: 'ci',
        scopes: ['agents:execute', 'credits:read'],
        budget: { amount: 5, period: 'day' },
      });
      expect(created.key).to.match(/^ak_live_/);
      expect(created.api_key).to.include({ user_id: u.user.id, name: 'ci' });
      expect(created.api_key.budget).to.include({ amount: 5, period: 'day' });
      const asKey = sdk(d, { apiKey: created.key });
      expect((await asKey.me()).user.id).to.equal(u.user.id);

      const listed = await root.adminKeys.list({ user_id: u.email });
      expect(listed.map((k) => k.id)).to.deep.equal([created.api_key.id]);
      expect(JSON.stringify(listed)).not.to.include(created.key);
      expect((await root.adminKeys.list({ limit: 200 })).map((k) => k.id)).to.include(created.api_key.id);

      const updated = await root.adminKeys.update(created.api_key.id, {
        name: 'ci-prod',
        rate_limit_per_hour: 500,
        expires_at: null,
        budget: null,
      });
      expect(updated).to.include({ name: 'ci-prod', rate_limit_per_hour: 500, expires_at: null, budget: null });

      const rolled = await root.adminKeys.roll(created.api_key.id, { graceSeconds: 0 });
      expect(rolled.key)
        .to.match(/^ak_live_/)
        .and.not.equal(created.key);
      expect(rolled.api_key.id).to.equal(created.api_key.id);
      expect(rolled.previous_expires_at).to.be.a('string');
      expect(await rejection(asKey.me())).to.be.instanceOf(AuthenticationError);
      const asRolled = sdk(d, { apiKey: rolled.key });
      expect((await asRolled.me()).user.id).to.equal(u.user.id);

      expect((await root.adminKeys.revoke(created.api_key.id)).status).to.equal('revoked');
      expect(await rejection(asRolled.me())).to.be.instanceOf(AuthenticationError);
      const again = await rejection(root.adminKeys.update(created.api_key.id, { name: 'late' }));
      expect(again).to.be.instanceOf(ConflictError);
      expect(again.code).to.equal('INVALID_STATE');
    });

    it("a tenant admin manages its members' keys; another tenant's key is NotFoundError", async () => {
      const k = await tenantAdmin.adminKeys.create({
        user_id: member.user.id,
        name: 'member ci',
        scopes: ['sessions:read'],
      });
      expect((await tenantAdmin.adminKeys.list()).map((x) => x.id)).to.include(k.api_key.id);
      const outsiderKey = await buildApiKey(d, outsider, { name: 'outside' });
      expect((await tenantAdmin.adminKeys.list()).map((x) => x.id)).not.to.include(outsiderKey.id);
      expect(await rejection(tenantAdmin.adminKeys.list({ user_id: outsider.email }))).to.be.instanceOf(NotFoundError);
      expect(await rejection(tenantAdmin.adminKeys.revoke(outsiderKey.id))).to.be.instanceOf(NotFoundError);
      expect(await rejection(tenantAdmin.adminKeys.roll(outsiderKey.id))).to.be.instanceOf(NotFoundError);
      const scope = await rejection(tenantAdmin.adminKeys.update(k.api_key.id, { scopes: ['admin'] }));
      expect(scope).to.be.instanceOf(AuthorizationError);
      expect(scope.code).to.equal('INSUFFICIENT_SCOPE');
      expect((await tenantAdmin.adminKeys.revoke(k.api_key.id)).status).to.equal('revoked');
    });

    it('roll is sent once even when the answer is lost (a retry would end the kept secret)', async () => {
      const server = await scriptedServer((_req, res) => res.destroy());
      try {
        const client = sdk(server.url, { apiKey: 'ak_live_x' }, { maxRetries: 3 });
        await client.adminKeys.roll('key_01jabc', { graceSeconds: 60 }).then(
          () => expect.fail('a lost answer must reject'),
          () => undefined,
        );
        expect(server.hits).to.equal(1);
        // Other admin POSTs are retried (with the same idempotency key).
        await client.credits.verify().catch(() => undefined);
        expect(server.hits).to.be.greaterThan(2);
      } finally {
        await server.close();
      }
    });
  });

  describe('credits', () => {
    it('grant (idempotent with a key), adminBalance, adminTransactions, allAdminTransactions, verify', async () => {
      const u = await buildUser(d);
      const key = `sdk-grant-${randomBytes(4).toString('hex')}`;
      const g = await root.credits.grant(
        { user_id: u.email, amount: 12.5, reason: 'welcome' },
        { idempotencyKey: key },
      );
      expect(g.transaction).to.include({ kind: 'grant', amount: 12.5, reason: 'welcome' });
      expect(g.balance).to.include({ balance: 12.5, reserved: 0, available: 12.5 });
      expect(g.pool).to.equal(undefined);
      const replay = await root.credits.grant(
        { user_id: u.email, amount: 12.5, reason: 'welcome' },
        { idempotencyKey: key },
      );
      expect(replay.transaction.id).to.equal(g.transaction.id);
      const reused = await rejection(
        root.credits.grant({ user_id: u.email, amount: 1, reason: 'welcome' }, { idempotencyKey: key }),
      );
      expect(reused).to.be.instanceOf(ConflictError);
      expect(reused.code).to.equal('IDEMPOTENCY_KEY_REUSED');
      await root.credits.grant({ user_id: u.user.id, amount: 1, reason: 'second' });
      await root.credits.adjust({ user_id: u.email, amount: -0.5, reason: 'correction' });

      expect(await root.credits.adminBalance(u.email)).to.include({
        user_id: u.user.id,
        balance: 13,
        reserved: 0,
        available: 13,
      });
      const page = await root.credits.adminTransactions({ user_id: u.email, limit: 2 });
      expect(page.user_id).to.equal(u.user.id);
      expect(page.transactions.map((t) => t.reason)).to.deep.equal(['correction', 'second']);
      expect(page.next_cursor).to.be.a('string');
      const older = await root.credits.adminTransactions({ user_id: u.user.id, limit: 2, cursor: page.next_cursor! });
      expect(older.transactions.map((t) => t.reason)).to.deep.equal(['welcome']);
      const all = await collect(root.credits.allAdminTransactions({ user_id: u.email, limit: 1 }));
      expect(all.map((t) => t.amount)).to.deep.equal([-0.5, 1, 12.5]);

      const v = await root.credits.verify();
      expect(v).to.include({ ok: true });
      expect(v.mismatches).to.deep.equal([]);
    });

    it("a tenant admin grants out of its tenant's pool, reads its members only, and cannot adjust or verify", async () => {
      await root.tenants.grantCredits(tenantId, { amount: 5, reason: 'allotment' });
      const g = await tenantAdmin.credits.grant({ user_id: member.email, amount: 2, reason: 'sprint' });
      expect(g.transaction.amount).to.equal(2);
      expect(g.pool).to.include({ tenant_id: tenantId });
      const short = await rejection(
        tenantAdmin.credits.grant({ user_id: member.email, amount: 1_000, reason: 'too much' }),
      );
      expect(short).to.be.instanceOf(InsufficientCreditsError);
      const self = await rejection(
        tenantAdmin.credits.grant({ user_id: tenantAdminUser.email, amount: 1, reason: 'me' }),
      );
      expect(self).to.be.instanceOf(AuthorizationError);

      expect((await tenantAdmin.credits.adminBalance(member.email)).user_id).to.equal(member.user.id);
      expect((await tenantAdmin.credits.adminTransactions({ user_id: member.email })).transactions[0]!.reason).to.equal(
        'sprint',
      );
      expect(await rejection(tenantAdmin.credits.adminBalance(outsider.email))).to.be.instanceOf(NotFoundError);
      expect(await rejection(tenantAdmin.credits.adminTransactions({ user_id: outsider.user.id }))).to.be.instanceOf(
        NotFoundError,
      );
      for (const call of [
        () => tenantAdmin.credits.verify(),
        () => tenantAdmin.credits.adjust({ user_id: member.email, amount: 1, reason: 'no' }),
      ]) {
        const err = await rejection(call());
        expect(err).to.be.instanceOf(AuthorizationError);
        expect(err).to.include({ code: 'FORBIDDEN', status: 403 });
      }
      const pool = await rejection(tenantAdmin.tenants.grantCredits(tenantId, { amount: 1, reason: 'no' }));
      expect(pool).to.be.instanceOf(AuthorizationError);
    });
  });

  describe('sessions', () => {
    it('adminList and adminAll over the reach (by user and status), adminCancel a running one', async function () {
      this.timeout(60_000);
      const runner = await buildUser(d, { tenantId, tier: 'team' });
      await grant(d, runner, 10);
      const asRunner = sdk(d, { accessToken: runner.token });
      const run = await asRunner.execute({
        vision: 'Take your time over this one [slow:3000]',
        options: { costBudget: 1 },
      });
      const id = run.session.id;

      const page = await root.sessions.adminList({ user_id: runner.email, status: 'running' });
      expect(page.sessions.map((s) => s.id)).to.deep.equal([id]);
      expect((await collect(tenantAdmin.sessions.adminAll({ status: 'running' }))).map((s) => s.id)).to.include(id);
      expect(
        (await collect(root.sessions.adminAll({ user_id: runner.user.id, limit: 1 }))).map((s) => s.id),
      ).to.deep.equal([id]);
      expect(await rejection(tenantAdmin.sessions.adminList({ user_id: outsider.email }))).to.be.instanceOf(
        NotFoundError,
      );

      const cancelled = await tenantAdmin.sessions.adminCancel(id);
      expect(cancelled.id).to.equal(id);
      const end = await waitForEnd(d, runner, id);
      expect(end.status).to.equal('cancelled');
      const again = await rejection(root.sessions.adminCancel(id));
      expect(again).to.be.instanceOf(ConflictError);
      expect(again.code).to.equal('INVALID_STATE');
      expect((await root.sessions.adminList({ user_id: runner.email, status: 'running' })).sessions).to.deep.equal([]);
    });

    it("a tenant admin cannot see or cancel another tenant's session", async function () {
      this.timeout(60_000);
      await grant(d, outsider, 10);
      const run = await sdk(d, { accessToken: outsider.token }).execute({
        vision: 'Outside the tenant [slow:3000]',
        options: { costBudget: 1 },
      });
      const id = run.session.id;
      expect((await collect(tenantAdmin.sessions.adminAll())).map((s) => s.id)).not.to.include(id);
      expect(await rejection(tenantAdmin.sessions.adminCancel(id))).to.be.instanceOf(NotFoundError);
      expect((await root.sessions.adminCancel(id)).id).to.equal(id);
      expect((await waitForEnd(d, outsider, id)).status).to.equal('cancelled');
    });
  });

  describe('audit', () => {
    it('list (filtered, paged), all, verify; a tenant admin sees its tenant and cannot verify', async () => {
      const u = await buildUser(d, { tenantId });
      await root.users.suspend(u.email);
      await root.users.activate(u.email);
      const latest = await root.audit.list({ user_id: u.user.id, action: 'user.*', limit: 1 });
      expect(latest.entries.map((e) => e.action)).to.deep.equal(['user.activate']);
      expect(latest.next_cursor).to.be.a('string');
      const oldestFirst = (
        await collect(root.audit.all({ user_id: u.user.id, action: 'user.*', order: 'asc', limit: 1 }))
      ).map((e) => e.action);
      expect(oldestFirst).to.include.members(['user.suspend', 'user.activate']);
      expect(oldestFirst.indexOf('user.suspend')).to.be.lessThan(oldestFirst.indexOf('user.activate'));

      const v = await root.audit.verify();
      expect(v.ok, JSON.stringify(v.first_bad)).to.equal(true);
      expect(v.entries).to.be.greaterThan(0);

      const theirs = await tenantAdmin.audit.list({ action: 'user.*', limit: 50 });
      expect(theirs.entries.map((e) => e.action)).to.include('user.suspend');
      expect(theirs.entries.every((e) => e.tenant_id === tenantId)).to.equal(true);
      const refused = await rejection(tenantAdmin.audit.verify());
      expect(refused).to.be.instanceOf(AuthorizationError);
      expect(refused.code).to.equal('FORBIDDEN');
    });
  });
});
