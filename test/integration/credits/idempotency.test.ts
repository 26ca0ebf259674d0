import { expect } from 'chai';
import { ManualClock } from '../../../daemon/clock.js';
import { GatewayError } from '../../../daemon/errors.js';
import { canonicalJson, hashRequest, isIdempotencyKey } from '../../../daemon/idempotency/key.js';
import { IdempotencyStore } from '../../../daemon/idempotency/store.js';
import { IdempotencyRepository } from '../../../daemon/storage/repos/idempotency.js';
import { describeStorage } from '../../helpers/backends.js';
import { openTestDatabase, type TestDatabase } from '../../helpers/database.js';
import { toMicros } from '../../../daemon/credits/money.js';
import { buildLedger, buildUser, expectCode } from './helpers.js';

const H1 = hashRequest({ a: 1 });
const H2 = hashRequest({ a: 2 });
const DAY = 24 * 3600 * 1000;

describe('idempotency/key', () => {
  it('accepts 1..255 printable ASCII characters only', () => {
    expect(isIdempotencyKey('a')).to.equal(true);
    expect(isIdempotencyKey('x'.repeat(255))).to.equal(true);
    expect(isIdempotencyKey('0f8fad5b-d9cb-469f-a165-70867728950e')).to.equal(true);
    expect(isIdempotencyKey('with space ~!')).to.equal(true);
    for (const bad of ['', 'x'.repeat(256), 'tab\there', 'new\nline', 'é', '\u0000', 42, null, undefined]) {
      expect(isIdempotencyKey(bad), JSON.stringify(bad)).to.equal(false);
    }
  });

  it('hashes requests independently of key order', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: null } })).to.equal(
      '{"a":{"c":null,"d":[1,{"x":1,"y":2}]},"b":1}',
    );
    expect(hashRequest({ a: 1, b: 2 })).to.equal(hashRequest({ b: 2, a: 1 }));
    expect(hashRequest({ a: 1 })).not.to.equal(hashRequest({ a: '1' }));
    expect(H1).to.match(/^[0-9a-f]{64}$/);
  });
});

describeStorage('idempotency/store', (backend) => {
  let tdb: TestDatabase;
  let clock: ManualClock;
  let store: IdempotencyStore;
  let userId: string;

  before(async () => {
    tdb = await openTestDatabase(backend);
  });
  after(async () => tdb?.close());
  beforeEach(async () => {
    clock = new ManualClock();
    store = new IdempotencyStore({ database: tdb.database, keys: new IdempotencyRepository(tdb.database), clock });
    userId = await buildUser(tdb.database);
  });

  it('runs once and replays the stored response for the same request within 24 h', async () => {
    let runs = 0;
    const fn = async () => ({ status: 201, body: { n: ++runs, nested: { ok: true } } });
    const first = await store.run(userId, 'k1', H1, fn);
    expect(first).to.deep.equal({ status: 201, body: { n: 1, nested: { ok: true } }, replayed: false });
    clock.advance(DAY - 1);
    const second = await store.run(userId, 'k1', H1, fn);
    expect(second).to.deep.equal({ status: 201, body: { n: 1, nested: { ok: true } }, replayed: true });
    expect(runs).to.equal(1);
  });

  it('runs again once the stored response is older than 24 h', async () => {
    let runs = 0;
    const fn = async () => ({ status: 200, body: { n: ++runs } });
    await store.run(userId, 'k1', H1, fn);
    clock.advance(DAY);
    expect(await store.run(userId, 'k1', H1, fn)).to.deep.equal({ status: 200, body: { n: 2 }, replayed: false });
  });

  it('refuses the same key with another request', async () => {
    await store.run(userId, 'k1', H1, async () => ({ status: 200, body: {} }));
    const e = await expectCode(
      store.run(userId, 'k1', H2, async () => ({ status: 200, body: {} })),
      'IDEMPOTENCY_KEY_REUSED',
    );
    expect(e.status).to.equal(409);
  });

  it('makes a retry sent while the first request runs wait for it, then replays its answer', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let runs = 0;
    const first = store.run(userId, 'k1', H1, async () => {
      runs += 1;
      await gate;
      return { status: 202, body: { id: 'ses_1' } };
    });
    await new Promise((r) => setTimeout(r, 20));
    let retryDone = false;
    const retry = store
      .run(userId, 'k1', H1, async () => ({ status: 500, body: { ran: 'twice' } }))
      .finally(() => (retryDone = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(retryDone, 'the retry answered before the first request finished').to.equal(false);
    release();
    expect((await first).replayed).to.equal(false);
    expect(await retry).to.deep.equal({ status: 202, body: { id: 'ses_1' }, replayed: true });
    expect(runs).to.equal(1);
  });

  it('keeps nothing of a request that fails mid-way: its claim and its writes roll back together', async () => {
    const before = await tdb.database.db
      .selectFrom('credit_ledger')
      .select('id')
      .where('user_id', '=', userId)
      .execute();
    const { ledger } = buildLedger(tdb.database, { clock });
    await expectCode(
      store.run(userId, 'k1', H1, async (trx) => {
        await ledger.grant(
          { userId, amount: toMicros(1_000_000), reason: 'half', actor: { type: 'system', id: null } },
          trx,
        );
        throw new GatewayError('INVALID_STATE', 'the request fails after its first write');
      }),
      'INVALID_STATE',
    );
    const after = await tdb.database.db
      .selectFrom('credit_ledger')
      .select('id')
      .where('user_id', '=', userId)
      .execute();
    expect(after).to.deep.equal(before);
    const keys = await tdb.database.db
      .selectFrom('idempotency_keys')
      .select('key')
      .where('user_id', '=', userId)
      .execute();
    expect(keys).to.deep.equal([]);
  });

  it('frees the key when the request fails, so a retry runs', async () => {
    const boom = new GatewayError('INSUFFICIENT_CREDITS', 'no');
    let thrown: unknown;
    await store.run(userId, 'k1', H1, async () => Promise.reject(boom)).catch((e: unknown) => (thrown = e));
    expect(thrown).to.equal(boom);
    expect(await store.run(userId, 'k1', H1, async () => ({ status: 200, body: { retried: true } }))).to.deep.equal({
      status: 200,
      body: { retried: true },
      replayed: false,
    });
  });

  it('answers IN_USE for a claim an older daemon left in flight, until it expires', async () => {
    const now = clock.now();
    await tdb.database.db
      .insertInto('idempotency_keys')
      .values({
        user_id: userId,
        key: 'legacy',
        request_hash: H1,
        status: 'in_flight',
        response_status: null,
        response_body: null,
        created_at: now,
        expires_at: now + 1000,
      })
      .execute();
    await expectCode(
      store.run(userId, 'legacy', H1, async () => ({ status: 200, body: {} })),
      'IDEMPOTENCY_KEY_IN_USE',
    );
    clock.advance(1000);
    expect((await store.run(userId, 'legacy', H1, async () => ({ status: 200, body: { n: 1 } }))).replayed).to.equal(
      false,
    );
  });

  it('scopes keys per user and validates them', async () => {
    const other = await buildUser(tdb.database);
    await store.run(userId, 'shared', H1, async () => ({ status: 200, body: { who: 1 } }));
    expect(await store.run(other, 'shared', H2, async () => ({ status: 200, body: { who: 2 } }))).to.deep.equal({
      status: 200,
      body: { who: 2 },
      replayed: false,
    });
    for (const key of ['', 'x'.repeat(256), 'ключ', 'a\nb']) {
      await expectCode(
        store.run(userId, key, H1, async () => ({ status: 200, body: {} })),
        'INVALID_FIELD',
      );
    }
  });

  it('lets exactly one of many concurrent first requests run', async () => {
    let runs = 0;
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, () =>
        store.run(userId, 'race', H1, async () => {
          runs += 1;
          await new Promise((r) => setTimeout(r, 30));
          return { status: 200, body: {} };
        }),
      ),
    );
    expect(runs).to.equal(1);
    // The others waited for it and got its answer: no error, one fresh run.
    expect(results.filter((r) => r.status === 'rejected')).to.deep.equal([]);
    const fresh = results.filter((r) => r.status === 'fulfilled' && !r.value.replayed);
    expect(fresh).to.have.length(1);
  });

  it('prunes expired rows', async () => {
    await store.run(userId, 'old', H1, async () => ({ status: 200, body: {} }));
    clock.advance(DAY + 1);
    expect(await store.pruneExpired()).to.be.at.least(1);
    await store.run(userId, 'new', H1, async () => ({ status: 200, body: {} }));
    const keys = await tdb.database.db
      .selectFrom('idempotency_keys')
      .select('key')
      .where('user_id', '=', userId)
      .execute();
    expect(keys.map((k) => k.key)).to.deep.equal(['new']);
  });
});
