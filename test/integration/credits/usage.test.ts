import { expect } from 'chai';
import { ManualClock } from '../../../daemon/clock.js';
import { credits, toMicros, type Micros } from '../../../daemon/credits/money.js';
import { UsageReports, type UsageQuery } from '../../../daemon/credits/usage.js';
import { UsageRepository } from '../../../daemon/storage/repos/usage.js';
import { schemaId } from '../../../daemon/http/validation.js';
import { newId } from '../../../daemon/ids.js';
import { EVERYTHING } from '../../../daemon/policies/index.js';
import { createAjv } from '../../../daemon/schemas.js';
import { KeenClient, NotFoundError } from '../../../sdk/src/index.js';
import { describeStorage } from '../../helpers/backends.js';
import { openTestDatabase, type TestDatabase } from '../../helpers/database.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import {
  buildApiKey,
  buildTenant,
  buildUser,
  mintToken,
  platformAdmin,
  type TestUser,
} from '../../helpers/factories.js';
import type { ApiResponse } from '../../helpers/http.js';
import { execute, waitForEnd } from '../../helpers/sessions.js';
import { buildLedger, buildUser as buildLedgerUser, type LedgerFixture } from './helpers.js';

const ajv = createAjv();
const actor = { type: 'admin' as const, id: 'usr_admin' };

function expectShape(r: ApiResponse, schema: string): void {
  const validate = ajv.getSchema(schemaId(schema))!;
  expect(validate(r.body), `${schema}: ${JSON.stringify(validate.errors)}\n${r.text}`).to.equal(true);
}

/** A tiny RFC 4180 reader (quoted fields, doubled quotes), enough for the report's CSV. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (cell += '"'), i++;
      else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') row.push(cell), (cell = '');
    else if (c === '\n') row.push(cell), rows.push(row), (row = []), (cell = '');
    else cell += c;
  }
  if (cell !== '' || row.length > 0) row.push(cell), rows.push(row);
  return rows;
}

/** The CSV's rows as the JSON rows would read: numbers as numbers, empty cells as null. */
function csvAsJson(text: string): Array<Record<string, string | number | null>> {
  const [header, ...lines] = parseCsv(text);
  return lines.map((cells) =>
    Object.fromEntries(
      header!.map((h, i) => [
        h,
        cells[i] === '' ? null : /^-?\d+(\.\d+)?$/.test(cells[i]!) ? Number(cells[i]) : cells[i]!,
      ]),
    ),
  );
}

describeStorage('usage reports', (backend) => {
  describe('UsageReports over the ledger (a manual clock)', () => {
    let tdb: TestDatabase;
    let f: LedgerFixture;
    let usage: UsageReports;
    let tenantA: string;
    let u1: string;
    let u2: string;
    const T1 = Date.parse('2026-03-01T23:30:00Z');
    const T2 = Date.parse('2026-03-02T00:30:00Z');
    const T3 = Date.parse('2026-03-03T12:00:00Z');
    const range = { since: Date.parse('2026-02-28T00:00:00Z'), until: Date.parse('2026-03-05T00:00:00Z') };
    const report = (q: Partial<UsageQuery>) =>
      usage.report({ reach: EVERYTHING, groupBy: 'day', timeZone: 'UTC', ...range, ...q });
    const days = async (q: Partial<UsageQuery>) =>
      (await report(q)).rows.map((r) => [r.group, r.granted / 1e6, r.charged / 1e6, r.adjusted / 1e6]);

    before(async () => {
      tdb = await openTestDatabase(backend);
      f = buildLedger(tdb.database, { clock: new ManualClock(T1) });
      usage = new UsageReports(new UsageRepository(tdb.database));
      tenantA = newId('ten');
      await tdb.database.db
        .insertInto('tenants')
        .values({ id: tenantA, name: 'Tenant A', created_at: Date.now() })
        .execute();
      u1 = await buildLedgerUser(tdb.database, { tenantId: tenantA });
      u2 = await buildLedgerUser(tdb.database);
      // T1: u1 gets 10 and spends 1.5 of a 2-credit hold through key_k1.
      f.clock.set(T1);
      await f.ledger.grant({ userId: u1, amount: credits(10), reason: 'r', actor });
      const hold = await f.ledger.reserve({ userId: u1, amount: credits(2), ttlMs: 60_000, actor, apiKeyId: 'key_k1' });
      await f.ledger.settle(hold.id, toMicros(1_500_000));
      // T2 (00:30 UTC, 01:30 in Berlin, 19:30 the day before in New York): u2 gets 5, u1 is corrected by -1.
      f.clock.set(T2);
      await f.ledger.grant({ userId: u2, amount: credits(5), reason: 'r', actor });
      await f.ledger.adjust({ userId: u1, amount: -1_000_000 as Micros, reason: 'correction', actor });
      // T3: u1 gets 1 more.
      f.clock.set(T3);
      await f.ledger.grant({ userId: u1, amount: credits(1), reason: 'r', actor });
    });
    after(async () => tdb?.close());

    it('buckets days in UTC, omitting days without activity', async () => {
      expect(await days({})).to.deep.equal([
        ['2026-03-01', 10, 1.5, 0],
        ['2026-03-02', 5, 0, -1],
        ['2026-03-03', 1, 0, 0],
      ]);
    });

    it('cuts days in the report time zone (15-minute buckets folded into local days)', async () => {
      expect(await days({ timeZone: 'Europe/Berlin' })).to.deep.equal([
        ['2026-03-02', 15, 1.5, -1],
        ['2026-03-03', 1, 0, 0],
      ]);
      expect(await days({ timeZone: 'America/New_York' })).to.deep.equal([
        ['2026-03-01', 15, 1.5, -1],
        ['2026-03-03', 1, 0, 0],
      ]);
      // Kathmandu is UTC+5:45: 23:30 UTC is 05:15 the next day.
      expect((await days({ timeZone: 'Asia/Kathmandu' }))[0]).to.deep.equal(['2026-03-02', 15, 1.5, -1]);
    });

    it('since is inclusive and until exclusive, to the millisecond', async () => {
      expect(await days({ since: T2, until: T3 })).to.deep.equal([['2026-03-02', 5, 0, -1]]);
      expect(await days({ since: T2 + 1, until: T3 + 1 })).to.deep.equal([['2026-03-03', 1, 0, 0]]);
      expect(await days({ since: T1 - 1, until: T1 })).to.deep.equal([]);
    });

    it('groups by key (null: not spent through a key), user and tenant, with names; totals add up', async () => {
      const byKey = await report({ groupBy: 'key' });
      expect(byKey.rows.map((r) => [r.group, r.charged, r.granted])).to.deep.equal([
        ['key_k1', 1_500_000, 0],
        [null, 0, 16_000_000],
      ]);
      const byUser = await report({ groupBy: 'user' });
      expect(byUser.rows.map((r) => r.group)).to.deep.equal([u1, u2]);
      expect(byUser.rows[0]!.label).to.match(/@/);
      const byTenant = await report({ groupBy: 'tenant' });
      const a = byTenant.rows.find((r) => r.group === tenantA)!;
      expect(a).to.include({ label: 'Tenant A', granted: 11_000_000, charged: 1_500_000, adjusted: -1_000_000 });
      expect(byTenant.totals).to.include({
        granted: 16_000_000,
        charged: 1_500_000,
        adjusted: -1_000_000,
        refunded: 0,
      });
    });

    it('a tenant reach sees its tenant only; filters narrow it further', async () => {
      const r = await report({ reach: { tenantId: tenantA }, groupBy: 'user' });
      expect(r.rows.map((x) => x.group)).to.deep.equal([u1]);
      expect((await report({ userId: u2 })).totals.granted).to.equal(5_000_000);
      expect((await report({ apiKeyId: 'key_k1' })).totals).to.include({ charged: 1_500_000, granted: 0 });
      expect((await report({ tenantId: tenantA, reach: { userId: u2 } })).rows).to.deep.equal([]);
    });
  });

  describe('GET /v1/usage and /v1/admin/usage', function () {
    this.timeout(60_000);
    let d: TestDaemon;
    let root: string;
    let tenantA: string;
    let tenantB: string;
    let adminA: TestUser;
    let alice: TestUser; // tenant A, runs through a key and signed in
    let bob: TestUser; // tenant A, adjusted
    let carol: TestUser; // tenant B
    let aliceKey: { id: string; key: string };
    const sessionIds: string[] = [];
    // A little in the future: everything written before the request is inside the range.
    const window = () => `since=1d&until=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`;
    const get = (path: string, token: string, headers: Record<string, string> = {}) =>
      d.api.get(path, { token, headers });

    async function run(u: TestUser, creds: { token?: string; apiKey?: string }, vision: string) {
      const r = await d.api.post('/v1/agents/execute', { vision, options: { costBudget: 1 } }, creds);
      expect(r.status, r.text).to.equal(200);
      await waitForEnd(d, creds, r.body.session.id);
      await d.container.supervisor.settled(r.body.session.id);
      sessionIds.push(r.body.session.id);
      return r.body.session.id as string;
    }

    before(async () => {
      d = await startDaemon({ backend, logLevel: 'warn' });
      root = mintToken(d, await platformAdmin(d));
      tenantA = await buildTenant(d, 'Acme');
      tenantB = await buildTenant(d, 'Globex');
      adminA = await buildUser(d, { role: 'admin', tenantId: tenantA });
      alice = await buildUser(d, { tenantId: tenantA, tier: 'team' });
      bob = await buildUser(d, { tenantId: tenantA, tier: 'team' });
      carol = await buildUser(d, { tenantId: tenantB, tier: 'team' });
      aliceKey = await buildApiKey(d, alice, { name: 'ci key' });
      for (const u of [alice, bob, carol]) {
        const g = await d.api.post(
          '/v1/admin/credits/grant',
          { user_id: u.user.id, amount: 20, reason: 'usage test' },
          { token: root },
        );
        expect(g.status, g.text).to.equal(201);
      }
      const viaKey = await run(alice, { apiKey: aliceKey.key }, 'Build a usage report [iterations:3]');
      await run(alice, { token: alice.token }, 'Build another thing [iterations:2]');
      await run(bob, { token: bob.token }, 'Build something for bob [iterations:2]');
      await run(carol, { token: carol.token }, 'Build something for carol [iterations:4]');
      // A refund of part of the key's session, and an adjustment of bob's balance.
      const refund = await d.api.post(
        `/v1/admin/sessions/${viaKey}/refund`,
        { amount: 0.01, reason: 'flaky run' },
        { token: root },
      );
      expect(refund.status, refund.text).to.equal(201);
      const adjust = await d.api.post(
        '/v1/admin/credits/adjust',
        { user_id: bob.user.id, amount: -0.5, reason: 'correction' },
        { token: root },
      );
      expect(adjust.status, adjust.text).to.equal(201);
    });
    after(async () => d?.stop());

    it('sums equal the ledger exactly: per user, granted - charged + refunded + adjusted = sum of entries = balance; verify is clean', async () => {
      const r = await get(`/v1/admin/usage?group_by=user&${window()}`, root);
      expect(r.status, r.text).to.equal(200);
      expectShape(r, 'UsageReportResponse');
      const db = d.container.database.db;
      for (const u of [alice, bob, carol]) {
        const row = r.body.rows.find((x: { user_id: string }) => x.user_id === u.user.id);
        expect(row, u.email).to.not.equal(undefined);
        expect(row.email).to.equal(u.email);
        const entries = await db
          .selectFrom('credit_ledger')
          .select(['kind', 'amount'])
          .where('user_id', '=', u.user.id)
          .execute();
        const micros = (kind: string) =>
          entries.filter((e) => e.kind === kind).reduce((s, e) => s + Number(e.amount), 0);
        const total = entries.reduce((s, e) => s + Number(e.amount), 0);
        expect(Math.round(row.charged * 1e6)).to.equal(-micros('charge'));
        expect(Math.round(row.refunded * 1e6)).to.equal(micros('refund'));
        expect(Math.round(row.adjusted * 1e6)).to.equal(micros('adjustment'));
        expect(Math.round(row.granted * 1e6)).to.equal(micros('grant'));
        expect(Math.round((row.granted - row.charged + row.refunded + row.adjusted) * 1e6)).to.equal(total);
        expect(Math.round(row.net * 1e6)).to.equal(-micros('charge') - micros('refund'));
        expect(total).to.equal(Number((await d.container.ledger.balance(u.user.id)).balance));
        const sessions = await db.selectFrom('sessions').selectAll().where('user_id', '=', u.user.id).execute();
        expect(row.sessions).to.equal(sessions.length);
        expect(row.input_tokens).to.equal(sessions.reduce((s, x) => s + Number(x.input_tokens), 0));
        expect(row.output_tokens).to.equal(sessions.reduce((s, x) => s + Number(x.output_tokens), 0));
      }
      expect(r.body.rows.find((x: { user_id: string }) => x.user_id === alice.user.id).refunded).to.equal(0.01);
      expect(r.body.rows.find((x: { user_id: string }) => x.user_id === bob.user.id).adjusted).to.equal(-0.5);
      // Totals are the sum of the rows.
      for (const k of [
        'charged',
        'refunded',
        'adjusted',
        'granted',
        'net',
        'sessions',
        'input_tokens',
        'output_tokens',
        'web_searches',
      ]) {
        const sum = r.body.rows.reduce((s: number, x: Record<string, number>) => s + Math.round(x[k]! * 1e6), 0);
        expect(Math.round(r.body.totals[k] * 1e6), k).to.equal(sum);
      }
      const v = await d.api.post('/v1/admin/credits/verify', {}, { token: root });
      expect(v.status, v.text).to.equal(200);
      expect(v.body).to.include({ ok: true });
      expect(v.body.mismatches).to.deep.equal([]);
    });

    it('group_by=day (default): one row for today in UTC, totals equal the user grouping', async () => {
      const byDay = await get(`/v1/admin/usage?${window()}`, root);
      expect(byDay.status, byDay.text).to.equal(200);
      expectShape(byDay, 'UsageReportResponse');
      expect(byDay.body).to.include({ group_by: 'day', time_zone: 'UTC' });
      const today = new Date().toISOString().slice(0, 10);
      expect(byDay.body.rows.map((x: { day: string }) => x.day)).to.include(today);
      const byUser = await get(`/v1/admin/usage?group_by=user&${window()}`, root);
      expect(byDay.body.totals).to.deep.equal(byUser.body.totals);
      expect(byDay.body.totals.sessions).to.equal(4);
      const zoned = await get(`/v1/admin/usage?time_zone=Pacific/Kiritimati&${window()}`, root);
      expect(zoned.status, zoned.text).to.equal(200);
      expect(zoned.body.time_zone).to.equal('Pacific/Kiritimati');
      expect(zoned.body.totals).to.deep.equal(byUser.body.totals);
    });

    it('group_by=key: the key that spent, with its name; sessions by key', async () => {
      const r = await get(`/v1/admin/usage?group_by=key&user_id=${alice.user.id}&${window()}`, root);
      expect(r.status, r.text).to.equal(200);
      expectShape(r, 'UsageReportResponse');
      const keyRow = r.body.rows.find((x: { api_key_id: string | null }) => x.api_key_id === aliceKey.id);
      expect(keyRow).to.include({ api_key_name: 'ci key', sessions: 1, refunded: 0.01 });
      const db = d.container.database.db;
      const keyCharges = await db
        .selectFrom('credit_ledger')
        .select('amount')
        .where('api_key_id', '=', aliceKey.id)
        .where('kind', '=', 'charge')
        .execute();
      expect(Math.round(keyCharges.reduce((s, e) => s - Number(e.amount), 0))).to.equal(
        Math.round(keyRow.charged * 1e6),
      );
      expect(keyRow.charged).to.be.greaterThan(0);
      const unkeyed = r.body.rows.find((x: { api_key_id: string | null }) => x.api_key_id === null);
      expect(unkeyed).to.include({ api_key_name: null, sessions: 1, granted: 20 });
      // The filter: only the key.
      const only = await get(`/v1/admin/usage?api_key_id=${aliceKey.id}&${window()}`, root);
      expect(only.body.totals).to.include({ sessions: 1, granted: 0, charged: keyRow.charged });
    });

    it('group_by=tenant: platform admins see both tenants; a tenant admin only its own', async () => {
      const all = await get(`/v1/admin/usage?group_by=tenant&${window()}`, root);
      expect(all.status, all.text).to.equal(200);
      const names = Object.fromEntries(
        all.body.rows.map((x: { tenant_id: string; tenant_name: string }) => [x.tenant_id, x.tenant_name]),
      );
      expect(names).to.include({ [tenantA]: 'Acme', [tenantB]: 'Globex' });
      const mine = await get(`/v1/admin/usage?group_by=tenant&${window()}`, adminA.token);
      expect(mine.status, mine.text).to.equal(200);
      expect(mine.body.rows.map((x: { tenant_id: string }) => x.tenant_id)).to.deep.equal([tenantA]);
      const aRow = all.body.rows.find((x: { tenant_id: string }) => x.tenant_id === tenantA);
      expect(mine.body.rows[0]).to.deep.equal(aRow);
      const users = await get(`/v1/admin/usage?group_by=user&${window()}`, adminA.token);
      expect(users.body.rows.map((x: { user_id: string }) => x.user_id).sort()).to.deep.equal(
        [alice.user.id, bob.user.id].sort(),
      );
    });

    it('a tenant admin naming another tenant or its user gets 404 as for one that does not exist; members get 403', async () => {
      const ghost = await get(`/v1/admin/usage?tenant_id=${newId('ten')}`, adminA.token);
      const other = await get(`/v1/admin/usage?tenant_id=${tenantB}`, adminA.token);
      expect(other.status, other.text).to.equal(404);
      expect(other.body.error).to.deep.equal(ghost.body.error);
      expect((await get(`/v1/admin/usage?tenant_id=${tenantA}`, adminA.token)).status).to.equal(200);
      expect((await get(`/v1/admin/usage?user_id=${carol.user.id}`, adminA.token)).status).to.equal(404);
      expect((await get(`/v1/admin/usage?user_id=${encodeURIComponent(carol.email)}`, adminA.token)).status).to.equal(
        404,
      );
      expect((await get(`/v1/admin/usage?tenant_id=${newId('ten')}`, root)).status).to.equal(404);
      const member = await get('/v1/admin/usage', alice.token);
      expect(member.status, member.text).to.equal(403);
      // As on every admin route: a member's credential never carries the admin scope.
      expect(member.body.error.code).to.equal('INSUFFICIENT_SCOPE');
      const viaKey = await d.api.get('/v1/admin/usage', { apiKey: aliceKey.key });
      expect(viaKey.status).to.equal(403);
    });

    it('GET /v1/usage: the caller only, by day or key; user and tenant are not its to choose', async () => {
      const own = await get(`/v1/usage?group_by=key&${window()}`, alice.token);
      expect(own.status, own.text).to.equal(200);
      expectShape(own, 'UsageReportResponse');
      const asAdmin = await get(`/v1/admin/usage?group_by=key&user_id=${alice.user.id}&${window()}`, root);
      expect(own.body.rows).to.deep.equal(asAdmin.body.rows);
      expect(own.body.totals).to.deep.equal(asAdmin.body.totals);
      const viaKey = await d.api.get(`/v1/usage?${window()}`, { apiKey: aliceKey.key });
      expect(viaKey.status, viaKey.text).to.equal(200);
      expect(viaKey.body.totals).to.deep.equal(asAdmin.body.totals);
      for (const q of ['group_by=user', 'group_by=tenant', `user_id=${bob.user.id}`, `tenant_id=${tenantA}`]) {
        const r = await get(`/v1/usage?${q}`, alice.token);
        expect(r.status, `${q}: ${r.text}`).to.equal(400);
        expect(r.body.error.code).to.equal('INVALID_FIELD');
      }
    });

    it('the SDK: client.usage.get() (own) and client.usage.admin() answer the API documents', async () => {
      const until = new Date(Date.now() + 60_000).toISOString();
      const own = await new KeenClient({ baseUrl: d.url, apiKey: aliceKey.key }).usage.get({
        group_by: 'key',
        since: '1d',
        until,
      });
      const http = await get(`/v1/usage?group_by=key&since=1d&until=${encodeURIComponent(until)}`, alice.token);
      expect(own.rows).to.deep.equal(http.body.rows);
      const sdkAdmin = new KeenClient({ baseUrl: d.url, accessToken: adminA.token });
      const byUser = await sdkAdmin.usage.admin({ group_by: 'user', user_id: alice.email, since: '1d', until });
      expect(byUser.rows.map((r) => r.user_id)).to.deep.equal([alice.user.id]);
      let err: unknown;
      await sdkAdmin.usage.admin({ tenant_id: tenantB }).catch((e) => (err = e));
      expect(err).to.be.instanceOf(NotFoundError);
    });

    it('CSV (format=csv or Accept: text/csv) has a header row and the same rows as the JSON', async () => {
      for (const group of ['day', 'key', 'user', 'tenant']) {
        const json = await get(`/v1/admin/usage?group_by=${group}&${window()}`, root);
        const csv = await get(`/v1/admin/usage?group_by=${group}&format=csv&${window()}`, root);
        expect(csv.status, csv.text).to.equal(200);
        expect(csv.headers.get('content-type')).to.match(/^text\/csv/);
        const header = parseCsv(csv.text)[0]!;
        expect(header).to.deep.equal(Object.keys(json.body.rows[0]));
        expect(csvAsJson(csv.text)).to.deep.equal(json.body.rows);
      }
      const accepted = await get(`/v1/usage?${window()}`, alice.token, { accept: 'text/csv' });
      expect(accepted.status).to.equal(200);
      expect(accepted.headers.get('content-type')).to.match(/^text\/csv/);
      expect(accepted.text.split('\n')[0]).to.equal(
        'day,charged,refunded,adjusted,granted,net,sessions,input_tokens,output_tokens,web_searches',
      );
      // format=json wins over the Accept header.
      const forced = await get(`/v1/usage?format=json&${window()}`, alice.token, { accept: 'text/csv' });
      expect(forced.headers.get('content-type')).to.match(/json/);
    });

    it('days are cut in credits.budget_time_zone unless the request names time_zone', async () => {
      const tokyo = await startDaemon({
        backend,
        logLevel: 'warn',
        config: { credits: { budget_time_zone: 'Asia/Tokyo' } },
      });
      try {
        const token = mintToken(tokyo, await platformAdmin(tokyo));
        const r = await tokyo.api.get('/v1/admin/usage', { token });
        expect(r.status, r.text).to.equal(200);
        expect(r.body.time_zone).to.equal('Asia/Tokyo');
        expect((await tokyo.api.get('/v1/admin/usage?time_zone=UTC', { token })).body.time_zone).to.equal('UTC');
      } finally {
        await tokyo.stop();
      }
    });

    it('bad values answer 400 INVALID_FIELD in the error envelope, naming the field', async () => {
      const cases: Array<[string, string]> = [
        ['group_by=week', 'group_by'],
        ['since=yesterday', 'since'],
        ['until=2026-13-45', 'until'],
        ['since=30x', 'since'],
        ['since=2026-01-02&until=2026-01-01', 'since'],
        ['since=2025-01-01T00:00:00Z&until=2026-01-03T00:00:00Z', 'since'],
        ['time_zone=Mars/Olympus_Mons', 'time_zone'],
        ['format=xml', 'format'],
        ['limit=5', 'limit'],
      ];
      for (const [q, field] of cases) {
        const r = await get(`/v1/admin/usage?${q}`, root);
        expect(r.status, `${q}: ${r.text}`).to.equal(400);
        expect(r.body.success).to.equal(false);
        expect(r.body.error.type).to.equal('VALIDATION_ERROR');
        expect(r.body.error.code).to.equal('INVALID_FIELD');
        expect(JSON.stringify(r.body.error.details), q).to.include(field);
        expect(r.body.request_id).to.be.a('string');
      }
      // 366 days is the longest range allowed.
      expect(
        (await get('/v1/admin/usage?since=2025-01-01T00:00:00Z&until=2026-01-02T00:00:00Z', root)).status,
      ).to.equal(200);
    });
  });
});
