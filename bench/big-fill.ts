/**
 * The big-tables fixture (bench/big-tables.ts): users, ledger entries, audit
 * entries and sessions written straight into a migrated database, fast (SQLite:
 * one prepared statement per table inside one transaction; Postgres: multi-row
 * INSERTs of a few thousand rows, in one transaction). Consistent enough that
 * `credits verify` and `audit verify` pass: each account's balance, version and
 * balance_after chain follow from its entries, and the audit entries continue
 * the hash chain from its head, hashed with the daemon's own code.
 */
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { AUDIT_ACTIONS } from '../daemon/audit/actions.js';
import { canonicalJson } from '../daemon/audit/canonical.js';
import { entryHash, type AuditRecord } from '../daemon/audit/entry.js';
import { newId } from '../daemon/ids.js';

export interface FillSize {
  users: number;
  ledger: number;
  audit: number;
  sessions: number;
}

/** The sizes of the issue at BIG_SCALE=1. */
export function sizeAt(scale: number): FillSize {
  const n = (x: number) => Math.max(10, Math.round(x * scale));
  return { users: n(100_000), ledger: n(1_000_000), audit: n(1_000_000), sessions: n(200_000) };
}

/** The one user who holds a tenth of the ledger, the sessions and the audit entries: the deep pages are his. */
export const HEAVY_EMAIL = 'big-0@bench.test';
/** Marks a filled database (written last, in the same transaction as the rest). */
export const FILLED_EMAIL = 'big-filled@bench.test';
export const HEAVY_SHARE = 0.1;
const DAY = 86_400_000;
/** Entry times span the year before the fill. */
const SPAN = 365 * DAY;

type Row = Record<string, string | number | null>;

interface Sink {
  insert(table: string, rows: Row[]): Promise<void>;
  head(): Promise<{ seq: number; hash: string }>;
  setHead(seq: number, hash: string): Promise<void>;
  filled(): Promise<boolean>;
  begin(): Promise<void>;
  commit(): Promise<void>;
  close(): Promise<void>;
}

function sqliteSink(file: string): Sink {
  const db = new BetterSqlite3(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  const statements = new Map<string, BetterSqlite3.Statement>();
  return {
    async insert(table, rows) {
      const columns = Object.keys(rows[0]!);
      const key = `${table}:${columns.join(',')}`;
      let stmt = statements.get(key);
      if (!stmt) {
        stmt = db.prepare(`insert into ${table} (${columns.join(', ')}) values (${columns.map(() => '?').join(', ')})`);
        statements.set(key, stmt);
      }
      for (const r of rows) stmt.run(...columns.map((c) => r[c]));
    },
    async head() {
      const r = db.prepare(`select seq, hash from audit_head where id = 'chain'`).get() as {
        seq: number;
        hash: string;
      };
      return { seq: Number(r.seq), hash: r.hash };
    },
    async setHead(seq, hash) {
      db.prepare(`update audit_head set seq = ?, hash = ? where id = 'chain'`).run(seq, hash);
    },
    async filled() {
      return db.prepare('select 1 from users where email = ?').get(FILLED_EMAIL) !== undefined;
    },
    async begin() {
      db.exec('begin');
    },
    async commit() {
      db.exec('commit');
    },
    async close() {
      db.close();
    },
  };
}

/** Postgres: bind parameters are limited to 65,535 per statement. */
const PG_PARAMS = 60_000;

async function postgresSink(url: string): Promise<Sink> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return {
    async insert(table, rows) {
      const columns = Object.keys(rows[0]!);
      const per = Math.floor(PG_PARAMS / columns.length);
      for (let i = 0; i < rows.length; i += per) {
        const chunk = rows.slice(i, i + per);
        const values: unknown[] = [];
        const tuples = chunk.map((r) => `(${columns.map((c) => `$${values.push(r[c])}`).join(', ')})`);
        await client.query(`insert into ${table} (${columns.join(', ')}) values ${tuples.join(', ')}`, values);
      }
    },
    async head() {
      const r = await client.query(`select seq, hash from audit_head where id = 'chain'`);
      return { seq: Number(r.rows[0].seq), hash: r.rows[0].hash as string };
    },
    async setHead(seq, hash) {
      await client.query(`update audit_head set seq = $1, hash = $2 where id = 'chain'`, [seq, hash]);
    },
    async filled() {
      return (await client.query('select 1 from users where email = $1', [FILLED_EMAIL])).rowCount === 1;
    },
    async begin() {
      await client.query('begin');
    },
    async commit() {
      await client.query('commit');
      // The visibility map too: index-only scans (the audit query's seq range) need it.
      await client.query('vacuum analyze');
    },
    async close() {
      await client.end();
    },
  };
}

function openSink(databaseUrl: string): Promise<Sink> {
  return databaseUrl.startsWith('sqlite:')
    ? Promise.resolve(sqliteSink(databaseUrl.slice('sqlite:'.length)))
    : postgresSink(databaseUrl);
}

/** True when the database already holds the fixture (a previous run filled it). */
export async function isFilled(databaseUrl: string): Promise<boolean> {
  const sink = await openSink(databaseUrl);
  try {
    return await sink.filled();
  } finally {
    await sink.close();
  }
}

/** Rows go out in batches of this many, so the fixture never sits in memory whole. */
const BATCH = 20_000;

class Batcher {
  private rows: Row[] = [];
  constructor(
    private readonly sink: Sink,
    private readonly table: string,
  ) {}
  async add(row: Row): Promise<void> {
    this.rows.push(row);
    if (this.rows.length >= BATCH) await this.flush();
  }
  async flush(): Promise<void> {
    if (this.rows.length === 0) return;
    const rows = this.rows;
    this.rows = [];
    await this.sink.insert(this.table, rows);
  }
}

/** Which user an item belongs to: the heavy user (index 0) gets HEAVY_SHARE of them, the rest spread evenly. */
function owner(i: number, users: number): number {
  return i % 10 === 0 ? 0 : 1 + (i % (users - 1));
}

/** Writes the fixture into a migrated, otherwise (almost) empty database; returns the seconds per table. */
export async function fill(
  databaseUrl: string,
  size: FillSize,
  log: (line: string) => void,
): Promise<Record<string, number>> {
  const sink = await openSink(databaseUrl);
  const timings: Record<string, number> = {};
  const timed = async (name: string, fn: () => Promise<void>) => {
    const t0 = performance.now();
    await fn();
    timings[name] = (performance.now() - t0) / 1000;
    log(`  ${name}: ${timings[name]!.toFixed(1)} s`);
  };
  const start = Date.now() - SPAN;
  const userIds: string[] = [];
  try {
    await sink.begin();
    await timed(`${size.users} users`, async () => {
      const b = new Batcher(sink, 'users');
      for (let i = 0; i < size.users; i++) {
        const at = start + Math.floor((i / size.users) * SPAN);
        const id = newId('usr', at);
        userIds.push(id);
        await b.add(userRow(id, i === 0 ? HEAVY_EMAIL : `big-${i}@bench.test`, at));
      }
      await b.flush();
    });

    await timed(`${size.ledger} ledger entries (+ ${size.users} accounts)`, async () => {
      // Per user: entry k (1-based) is a grant of 100 credits when k is odd, an adjustment of -40 when even.
      const counts = new Array<number>(size.users).fill(0);
      for (let i = 0; i < size.ledger; i++) counts[owner(i, size.users)]!++;
      const accounts = new Batcher(sink, 'credit_accounts');
      const seqOf = (k: number) => ({
        amount: k % 2 === 1 ? 100_000_000 : -40_000_000,
        after: Math.ceil(k / 2) * 100_000_000 - Math.floor(k / 2) * 40_000_000,
      });
      for (let u = 0; u < size.users; u++) {
        const n = counts[u]!;
        await accounts.add({
          user_id: userIds[u]!,
          tenant_id: null,
          balance: n === 0 ? 0 : seqOf(n).after,
          reserved: 0,
          updated_at: start + SPAN,
          version: n,
        });
      }
      await accounts.flush();
      const ledger = new Batcher(sink, 'credit_ledger');
      const next = new Array<number>(size.users).fill(0);
      for (let i = 0; i < size.ledger; i++) {
        const u = owner(i, size.users);
        const k = ++next[u]!;
        const at = start + Math.floor((i / size.ledger) * SPAN);
        const { amount, after } = seqOf(k);
        await ledger.add({
          id: newId('txn', at),
          user_id: userIds[u]!,
          tenant_id: null,
          seq: k,
          kind: amount > 0 ? 'grant' : 'adjustment',
          amount,
          reserved_delta: 0,
          balance_after: after,
          reserved_after: 0,
          reason: 'big-tables fixture',
          actor_type: 'system',
          actor_id: null,
          reservation_id: null,
          session_id: null,
          idempotency_key: null,
          created_at: at,
          pool_entry_id: null,
          api_key_id: null,
        });
      }
      await ledger.flush();
    });

    await timed(`${size.sessions} sessions`, async () => {
      const b = new Batcher(sink, 'sessions');
      for (let i = 0; i < size.sessions; i++) {
        const u = owner(i, size.users);
        const at = start + Math.floor((i / size.sessions) * SPAN);
        await b.add(sessionRow(newId('ses', at), userIds[u]!, at));
      }
      await b.flush();
    });

    await timed(`${size.audit} audit entries (hash chain)`, async () => {
      const head = await sink.head();
      let prev = head.hash;
      let seq = head.seq;
      const b = new Batcher(sink, 'audit_log');
      for (let i = 0; i < size.audit; i++) {
        const u = owner(i, size.users);
        const ts = start + Math.floor((i / size.audit) * SPAN);
        const details = i % 3 === 0 ? { via: 'big-tables', n: i } : {};
        const unhashed: Omit<AuditRecord, 'hash'> = {
          seq: ++seq,
          id: newId('aud', ts),
          ts,
          actor_type: 'user',
          actor_id: userIds[u]!,
          tenant_id: null,
          action: AUDIT_ACTIONS[i % AUDIT_ACTIONS.length]!,
          target_type: 'user',
          target_id: userIds[(u * 7 + 1) % size.users]!,
          outcome: i % 17 === 0 ? 'failure' : 'success',
          ip: '127.0.0.1',
          user_agent: 'big-tables',
          request_id: null,
          details,
          prev_hash: prev,
        };
        const hash = entryHash(unhashed);
        await b.add({ ...unhashed, details: canonicalJson(details), hash });
        prev = hash;
      }
      await b.flush();
      await sink.setHead(seq, prev);
    });
    await sink.insert('users', [userRow(newId('usr'), FILLED_EMAIL, Date.now())]);
    await timed('commit', () => sink.commit());
    return timings;
  } finally {
    await sink.close();
  }
}

function userRow(id: string, email: string, at: number): Row {
  return {
    id,
    tenant_id: null,
    email,
    password_hash: null,
    status: 'active',
    suspended_by_role: null,
    tier: 'enterprise',
    role: 'member',
    mfa_enabled: 0,
    mfa_secret_enc: null,
    mfa_last_step: null,
    tokens_not_before: 0,
    created_at: at,
    updated_at: at,
    last_login_at: null,
  };
}

function sessionRow(id: string, userId: string, at: number): Row {
  return {
    id,
    user_id: userId,
    tenant_id: null,
    status: 'completed',
    current_phase: null,
    vision: 'big-tables fixture',
    options: '{}',
    webhook_url: null,
    reservation_id: newId('res', at),
    reserved: 1_000_000,
    estimated_cost: 1_000_000,
    cost_so_far: 500_000,
    final_cost: 500_000,
    input_tokens: 1000,
    output_tokens: 500,
    web_searches: 0,
    owner: 'big-tables',
    last_seq: 0,
    cancel_requested_at: null,
    end_reason: 'completed',
    summary: null,
    request_id: null,
    sandboxed: 1,
    lease_epoch: 0,
    api_key_id: null,
    created_at: at,
    updated_at: at + 60_000,
    ended_at: at + 60_000,
  };
}
