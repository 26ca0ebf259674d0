import { expect } from 'chai';
import { AuditCheckpointer } from '../../../daemon/audit/checkpoints.js';
import type { AuditRecord } from '../../../daemon/audit/entry.js';
import type { AuditEvent } from '../../../daemon/audit/types.js';
import { verifyEntries } from '../../../daemon/audit/verify.js';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { AuditRepository } from '../../../daemon/storage/repos/audit.js';
import { buildTenant, buildUser, mintToken, platformAdmin } from '../../helpers/factories.js';
import { rehashFrom, silent } from './support.js';

/** An open `/v1/admin/audit/stream`: lines as they arrive. */
interface Feed {
  status: number;
  contentType: string | null;
  /** The next line (parsed), waiting up to `ms`. */
  next(ms?: number): Promise<any>;
  /** The next entry line, skipping heartbeats. */
  nextEntry(ms?: number): Promise<AuditRecord>;
  /** Resolves when the server ends the response. */
  ended: Promise<void>;
  close(): void;
}

async function openFeed(d: TestDaemon, token: string, query = ''): Promise<Feed> {
  const ac = new AbortController();
  const res = await fetch(`${d.url}/v1/admin/audit/stream${query}`, {
    headers: { authorization: `Bearer ${token}` },
    signal: ac.signal,
  });
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  let buf = '';
  const ended = (async () => {
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += Buffer.from(chunk).toString('utf8');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          lines.push(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
          waiters.splice(0).forEach((w) => w());
        }
      }
    } catch {
      // aborted by close()
    }
    waiters.splice(0).forEach((w) => w());
  })();
  let done = false;
  void ended.then(() => (done = true));
  const next = async (ms = 5000): Promise<any> => {
    const deadline = Date.now() + ms;
    while (lines.length === 0) {
      if (done) throw new Error('stream ended');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('no line within the time allowed');
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, left);
      });
    }
    return JSON.parse(lines.shift()!);
  };
  return {
    status: res.status,
    contentType: res.headers.get('content-type'),
    next,
    async nextEntry(ms = 5000) {
      for (;;) {
        const line = await next(ms);
        if (line.type !== 'heartbeat') return line as AuditRecord;
      }
    },
    ended,
    close: () => ac.abort(),
  };
}

/** A JSON Lines response (the test Api would try to parse it as one JSON document). */
async function getLines(
  d: TestDaemon,
  path: string,
  token: string,
): Promise<{ status: number; contentType: string | null; text: string; rows: AuditRecord[] }> {
  const res = await fetch(d.url + path, { headers: { authorization: `Bearer ${token}` } });
  const text = await res.text();
  const rows = res.ok
    ? text
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as AuditRecord)
    : [];
  return { status: res.status, contentType: res.headers.get('content-type'), text, rows };
}

// Made-up actions (`live.one`, ...) exercise the filters; the store takes any string.
const event = (action: string, tenantId: string | null, overrides: Partial<AuditEvent> = {}): AuditEvent => ({
  action: action as AuditEvent['action'],
  outcome: 'success',
  actor: { type: 'user', id: 'usr_actor' },
  tenantId,
  target: null,
  ...overrides,
});

describeStorage('audit over HTTP: query, stream, verify, export', (backend) => {
  let d: TestDaemon;
  let root: string;
  let tenantA: string;
  let tenantB: string;
  let adminA: string;
  let member: string;

  before(async () => {
    d = await startDaemon({ backend });
    root = mintToken(d, await platformAdmin(d));
    tenantA = await buildTenant(d, `Acme-${backend}`);
    tenantB = await buildTenant(d, `Globex-${backend}`);
    adminA = (await buildUser(d, { role: 'admin', tenantId: tenantA })).token;
    member = (await buildUser(d, { tenantId: tenantA })).token;
  });
  after(async () => d?.stop());

  describe('GET /v1/admin/audit', () => {
    const marker = `q-${Date.now().toString(36)}`;
    let t0: number;
    before(async () => {
      t0 = Date.now();
      const store = d.container.auditStore;
      await store.record(
        event('auth.login', tenantA, {
          actor: { type: 'user', id: `usr_${marker}` },
          target: { type: 'user', id: `usr_${marker}` },
        }),
      );
      await store.record(
        event('auth.login_failed', tenantA, {
          outcome: 'failure',
          actor: { type: 'anonymous', id: null },
          target: { type: 'user', id: `usr_${marker}` },
        }),
      );
      await store.record(
        event('key.create', tenantA, {
          actor: { type: 'admin', id: `usr_${marker}_admin` },
          target: { type: 'api_key', id: 'key_x' },
        }),
      );
      await store.record(event('auth.logout', tenantB, { actor: { type: 'user', id: `usr_${marker}_b` } }));
      await store.record(event('authx.odd', tenantA, { actor: { type: 'user', id: `usr_${marker}` } }));
    });

    it('answers entries in the record shape, newest first, with a cursor that walks every page once', async () => {
      const first = await d.api.get('/v1/admin/audit?limit=2', { token: root });
      expect(first.status, first.text).to.equal(200);
      expect(first.body.success).to.equal(true);
      expect(first.body.entries).to.have.length(2);
      expect(Object.keys(first.body.entries[0]).sort()).to.deep.equal(
        [
          'seq',
          'id',
          'ts',
          'actor_type',
          'actor_id',
          'tenant_id',
          'action',
          'target_type',
          'target_id',
          'outcome',
          'ip',
          'user_agent',
          'request_id',
          'details',
          'prev_hash',
          'hash',
        ].sort(),
      );
      expect(first.body.entries[0].seq).to.be.greaterThan(first.body.entries[1].seq);
      const seen: number[] = [];
      let cursor: string | null = null;
      do {
        const page: any = await d.api.get(`/v1/admin/audit?limit=3${cursor ? `&cursor=${cursor}` : ''}`, {
          token: root,
        });
        seen.push(...page.body.entries.map((e: AuditRecord) => e.seq));
        cursor = page.body.next_cursor;
      } while (cursor);
      const all = (await d.container.database.db.selectFrom('audit_log').select('seq').execute()).map((r) =>
        Number(r.seq),
      );
      expect(seen).to.deep.equal([...all].sort((a, b) => b - a));
      const asc = await d.api.get('/v1/admin/audit?order=asc&limit=3', { token: root });
      expect(asc.body.entries.map((e: AuditRecord) => e.seq)).to.deep.equal([...all].sort((a, b) => a - b).slice(0, 3));
    });

    it('filters by exact action, resource prefix, actor, user, tenant, outcome and time', async () => {
      const get = async (q: string) => {
        const r = await d.api.get(`/v1/admin/audit?limit=500&${q}`, { token: root });
        expect(r.status, r.text).to.equal(200);
        return r.body.entries as AuditRecord[];
      };
      const mine = (rows: AuditRecord[]) => rows.filter((e) => JSON.stringify(e).includes(marker));
      expect(mine(await get('action=auth.login')).map((e) => e.action)).to.deep.equal(['auth.login']);
      expect(mine(await get('action=auth.*')).map((e) => e.action)).to.deep.equal([
        'auth.logout',
        'auth.login_failed',
        'auth.login',
      ]);
      expect(mine(await get('action=auth')).map((e) => e.action)).to.deep.equal([
        'auth.logout',
        'auth.login_failed',
        'auth.login',
      ]);
      expect((await get(`actor_id=usr_${marker}_admin`)).map((e) => e.action)).to.deep.equal(['key.create']);
      expect((await get(`user_id=usr_${marker}`)).map((e) => e.action)).to.deep.equal([
        'authx.odd',
        'auth.login_failed',
        'auth.login',
      ]);
      const ofB = await get(`tenant_id=${tenantB}`);
      expect(ofB).to.not.be.empty;
      expect(ofB.every((e) => e.tenant_id === tenantB)).to.equal(true);
      expect(mine(await get('outcome=failure')).map((e) => e.action)).to.deep.equal(['auth.login_failed']);
      const since = new Date(t0).toISOString();
      expect(mine(await get(`since=${encodeURIComponent(since)}`))).to.have.length(5);
      expect(mine(await get(`until=${encodeURIComponent(since)}`))).to.have.length(0);
    });

    it('refuses malformed parameters with 400 and non-admins with 403', async () => {
      for (const q of ['cursor=abc', 'since=yesterday', 'limit=0', 'limit=501', 'order=up', 'bogus=1', 'action=.*']) {
        const r = await d.api.get(`/v1/admin/audit?${q}`, { token: root });
        expect(r.status, q).to.equal(400);
        expect(r.body.error.code).to.equal('INVALID_FIELD');
      }
      const denied = await d.api.get('/v1/admin/audit', { token: member });
      expect(denied.status).to.equal(403);
      expect((await d.api.get('/v1/admin/audit')).status).to.equal(401);
    });
  });

  describe('tenant admins', () => {
    before(async () => {
      await d.container.auditStore.record(event('tenant.test', tenantA, { details: { who: 'a' } }));
      await d.container.auditStore.record(event('tenant.test', tenantB, { details: { who: 'b' } }));
    });

    it('see only their tenant, whatever the filter', async () => {
      const all = await d.api.get('/v1/admin/audit?limit=500', { token: adminA });
      expect(all.status, all.text).to.equal(200);
      expect(all.body.entries.length).to.be.greaterThan(0);
      expect(all.body.entries).to.not.be.empty;
      expect(all.body.entries.every((e: AuditRecord) => e.tenant_id === tenantA)).to.equal(true);
      const other = await d.api.get(`/v1/admin/audit?tenant_id=${tenantB}`, { token: adminA });
      expect(other.status).to.equal(200);
      expect(other.body.entries).to.deep.equal([]);
      const own = await d.api.get(`/v1/admin/audit?tenant_id=${tenantA}&action=tenant.test`, { token: adminA });
      expect(own.body.entries.map((e: AuditRecord) => e.details.who)).to.deep.equal(['a']);
    });

    it('export only their tenant', async () => {
      const { status, rows } = await getLines(d, '/v1/admin/audit/export', adminA);
      expect(status).to.equal(200);
      expect(rows.length).to.be.greaterThan(0);
      expect(rows).to.not.be.empty;
      expect(rows.every((e) => e.tenant_id === tenantA)).to.equal(true);
      const other = await getLines(d, `/v1/admin/audit/export?tenant_id=${tenantB}`, adminA);
      expect(other.status).to.equal(200);
      expect(other.text).to.equal('');
    });

    it('cannot verify (platform admins only)', async () => {
      const r = await d.api.post('/v1/admin/audit/verify', {}, { token: adminA });
      expect(r.status).to.equal(403);
      expect(r.body.error.code).to.equal('FORBIDDEN');
    });

    it("stream only their tenant's entries", async () => {
      const feed = await openFeed(d, adminA);
      try {
        expect(feed.status).to.equal(200);
        await feed.next(); // the opening heartbeat
        await d.container.auditStore.record(event('stream.scope', tenantB, { details: { who: 'b' } }));
        await d.container.auditStore.record(event('stream.scope', tenantA, { details: { who: 'a' } }));
        const got = await feed.nextEntry();
        expect(got).to.include({ action: 'stream.scope', tenant_id: tenantA });
      } finally {
        feed.close();
      }
      const other = await openFeed(d, adminA, `?tenant_id=${tenantB}`);
      try {
        await other.next();
        await d.container.auditStore.record(event('stream.scope2', tenantB));
        let failed = false;
        await other.nextEntry(1500).catch(() => (failed = true));
        expect(failed).to.equal(true);
      } finally {
        other.close();
      }
    });
  });

  describe('GET /v1/admin/audit/stream', () => {
    it('delivers, as JSON Lines, an entry written after it opened, and one written by a second daemon', async () => {
      const feed = await openFeed(d, root, '?action=live.*');
      let d2: TestDaemon | undefined;
      try {
        expect(feed.status).to.equal(200);
        expect(feed.contentType).to.match(/^application\/x-ndjson/);
        const hello = await feed.next();
        expect(hello.type).to.equal('heartbeat');
        expect(hello.after_seq).to.be.a('number');
        await d.container.auditStore.record(event('other.thing', null));
        await d.container.auditStore.record(event('live.one', null, { details: { n: 1 } }));
        const one = await feed.nextEntry();
        expect(one).to.include({ action: 'live.one' });
        expect(one.seq).to.be.greaterThan(hello.after_seq);
        // Through the API of this daemon: a user created by an admin.
        d2 = await startDaemon({ backend, databaseUrl: d.home.databaseUrl, jwtSecret: d.home.jwtSecret });
        await d2.container.auditStore.record(event('live.two', null, { details: { from: 'd2' } }));
        const two = await feed.nextEntry(5000);
        expect(two).to.include({ action: 'live.two' });
        expect(two.details).to.deep.equal({ from: 'd2' });
      } finally {
        feed.close();
        await d2?.stop();
      }
    });

    it('resumes after after_seq, so a reconnecting client misses nothing', async () => {
      const head = (await d.container.auditStore.head()).seq;
      await d.container.auditStore.record(event('resume.a', null));
      await d.container.auditStore.record(event('resume.b', null));
      const feed = await openFeed(d, root, `?after_seq=${head}&action=resume.*`);
      try {
        expect((await feed.nextEntry()).action).to.equal('resume.a');
        expect((await feed.nextEntry()).action).to.equal('resume.b');
      } finally {
        feed.close();
      }
      expect((await d.api.get('/v1/admin/audit/stream?after_seq=-1', { token: root })).status).to.equal(400);
      expect((await d.api.get('/v1/admin/audit/stream', { token: member })).status).to.equal(403);
    });

    it('stops listening when the client goes away, and does not hold up shutdown', async () => {
      const d3 = await startDaemon({ backend });
      try {
        const token = mintToken(d3, await platformAdmin(d3));
        const feed = await openFeed(d3, token);
        await feed.next();
        const subscribers = () =>
          (d3.container.auditStore as unknown as { subscribers: Set<unknown> }).subscribers.size;
        expect(subscribers()).to.equal(1);
        feed.close();
        for (let i = 0; i < 50 && subscribers() > 0; i++) await new Promise((r) => setTimeout(r, 20));
        expect(subscribers()).to.equal(0);

        const open = await openFeed(d3, token);
        await open.next();
        const started = Date.now();
        await d3.stop();
        // The shutdown deadline is 2 s in tests: the stream must end well before it.
        expect(Date.now() - started).to.be.lessThan(1500);
        await open.ended;
      } finally {
        await d3.stop();
      }
    });
  });

  describe('GET /v1/admin/audit/export', () => {
    it('streams JSON Lines of a time range; an unfiltered export verifies on its own', async () => {
      const before = Date.now();
      await d.container.auditStore.record(event('export.one', tenantA));
      const r = await getLines(
        d,
        `/v1/admin/audit/export?since=${encodeURIComponent(new Date(before).toISOString())}`,
        root,
      );
      expect(r.status).to.equal(200);
      expect(r.contentType).to.match(/^application\/x-ndjson/);
      const rows = r.rows;
      expect(rows.map((e) => e.action)).to.include('export.one');
      expect(rows).to.not.be.empty;
      expect(rows.every((e) => e.ts >= before)).to.equal(true);
      const entries = (await getLines(d, '/v1/admin/audit/export', root)).rows;
      expect(entries[0]!.seq).to.equal(1);
      expect((await verifyEntries(entries)).ok).to.equal(true);
      const bad = await d.api.get('/v1/admin/audit/export?since=soon', { token: root });
      expect(bad.status).to.equal(400);
      expect(bad.body.error.code).to.equal('INVALID_FIELD');
    });
  });

  describe('POST /v1/admin/audit/verify', () => {
    it('reports an intact chain, then names an entry changed in the database, then a re-hashed chain by its checkpoint', async () => {
      const t = await startDaemon({ backend });
      try {
        const token = mintToken(t, await platformAdmin(t));
        for (let i = 0; i < 5; i++)
          await t.container.auditStore.record(event('verify.sample', null, { details: { i } }));
        const clean = await t.api.post('/v1/admin/audit/verify', {}, { token });
        expect(clean.status, clean.text).to.equal(200);
        expect(clean.body).to.include({ success: true, ok: true, first_bad: null });
        expect(clean.body.entries).to.be.greaterThan(4);
        expect(clean.body.checkpoints).to.include({ available: true, ok: true });

        // A checkpoint signed with the daemon's key, as its timer would write.
        const checkpointer = new AuditCheckpointer({
          audits: new AuditRepository(t.container.database),
          clock: t.container.clock,
          logger: silent,
          dataDir: t.config.audit.archive_dir,
        });
        await checkpointer.checkpointNow();

        const victim = await t.container.database.db
          .selectFrom('audit_log')
          .select(['seq', 'id'])
          .where('action', '=', 'verify.sample')
          .orderBy('seq', 'asc')
          .executeTakeFirstOrThrow();
        await t.container.database.db
          .updateTable('audit_log')
          .set({ details: '{"i":999}' })
          .where('seq', '=', victim.seq)
          .execute();
        const broken = await t.api.post('/v1/admin/audit/verify', {}, { token });
        expect(broken.status).to.equal(200);
        expect(broken.body.ok).to.equal(false);
        expect(broken.body.first_bad).to.include({ seq: Number(victim.seq), id: victim.id, reason: 'hash mismatch' });

        // The attacker re-hashes everything after the change: the chain is consistent, the checkpoint is not.
        await rehashFrom(t.container.database, Number(victim.seq));
        const rewritten = await t.api.post('/v1/admin/audit/verify', {}, { token });
        expect(rewritten.body.ok).to.equal(false);
        expect(rewritten.body.checkpoints.ok).to.equal(false);
        expect(rewritten.body.first_bad.reason).to.equal('rewritten chain');
      } finally {
        await t.stop();
      }
    });
  });
});
