import { mkdirSync } from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import {
  CompiledQuery,
  Kysely,
  PostgresDialect,
  SqliteDialect,
  sql,
  type Compilable,
  type PostgresPool,
  type PostgresPoolClient,
  type Transaction as KyselyTransaction,
} from 'kysely';
import pg from 'pg';
import { setBounded } from '../bounded-map.js';
import type { ResolvedConfig } from '../config/load.js';
import type { Logger } from '../logger.js';
import { ANNOUNCED_TABLES, InvalidationListener, WriteAnnouncer } from './invalidation.js';
import type { DB } from './schema.js';
import { WriteGenerations } from './write-generations.js';

export type Dialect = 'sqlite' | 'postgres';

/** A query handle: the database itself or an open transaction. Repositories accept either. */
export type Queryable = Kysely<DB>;
export type Transaction = KyselyTransaction<DB> | Kysely<DB>;

/**
 * Sees each transaction and ping: which, how long it took, and the error it
 * ended with (null when it committed). Set by daemon/monitoring; the cost per
 * call is one clock read and a function call.
 */
export type QueryObserver = (operation: 'transaction' | 'ping', seconds: number, error: unknown) => void;

declare const KEPT: unique symbol;

/**
 * An object served to many callers, the same one until what it was built from changes: a row a
 * prepared read keeps (`Database.prepareRead`), or something built from one and cached beside it (a
 * principal, its rate-limit policies). Frozen. Caches keyed by object identity accept only this type:
 * an object that is not kept is new on every request, and would only fill them.
 */
export type Kept<T> = Readonly<T> & { readonly [KEPT]: true };

const keptObjects = new WeakSet<object>();

/** Freezes `value` and marks it kept (see `Kept`). */
export function keep<T extends object>(value: T): Kept<T> {
  keptObjects.add(Object.freeze(value));
  return value as Kept<T>;
}

/** Whether `value` came from `keep()`: the one way to tell a kept row from a fresh one. */
export function isKept<T extends object>(value: T): value is Kept<T> {
  return keptObjects.has(value);
}

/**
 * A single-row read compiled once (see `Database.prepareRead`): `first()` binds new values and runs it,
 * in `trx` when given. With a cache, a row may be `Kept` (tell with `isKept`).
 */
export interface PreparedRead<P, R> {
  first(params: P, trx?: Queryable): Promise<R | Kept<R> | undefined>;
}

/**
 * Keeps a prepared read's rows in memory (see `Database.prepareRead`). `tables`: every table the read
 * looks at; a write to any of them drops what is kept. Only tables whose writes Postgres fleets
 * announce (ANNOUNCED_TABLES in daemon/storage/invalidation.ts).
 */
export interface ReadCacheOptions {
  tables: ReadonlyArray<keyof DB & string>;
  /**
   * How long a row may be kept at most: what an edit made outside the daemons (another process on the
   * SQLite file, psql) can go unseen, and the bound on Postgres while the invalidation link is silent.
   */
  ttlMs: number;
  maxEntries: number;
}

interface KeptEntry {
  value: Kept<object>;
  generation: number;
  until: number;
}

/** Stands for a named parameter while a prepared read is compiled. */
class ParamRef {
  constructor(readonly name: string) {}
}

export interface DatabaseOptions {
  url: string;
  poolMax: number;
  connectTimeoutMs: number;
  busyTimeoutMs: number;
  /**
   * Postgres: the server-side `statement_timeout` of every connection, in ms;
   * 0 leaves the server's own setting. Default 15000.
   */
  statementTimeoutMs?: number;
  /**
   * Postgres: how long the client waits for any answer to a query, in ms (pg's
   * `query_timeout`); bounds a query on a link that went silent (a partition),
   * where the server can neither answer nor cancel. The connection is dropped
   * from the pool. 0: wait forever. Default 20000.
   */
  queryTimeoutMs?: number;
  /** Postgres: TCP keepalive on every connection, first probe after this many idle ms; 0 turns it off. Default 10000. */
  keepAliveIdleMs?: number;
  /**
   * Postgres: the server-side `idle_in_transaction_session_timeout`, in ms; 0
   * leaves the server's setting. A daemon cut off in the middle of a transaction
   * leaves the server waiting for its next command with the transaction's row
   * locks held; this ends that session, so other daemons (their reapers) are not
   * blocked for the server's TCP timeout (hours). Default 10000.
   */
  idleInTransactionTimeoutMs?: number;
  logger: Logger;
  /**
   * Let prepared reads with a `cache` keep rows in memory. For the daemon: on SQLite it owns the file;
   * on Postgres it also LISTENs for the other daemons' writes on one more connection
   * (daemon/storage/invalidation.ts). A tool that opens the database beside running daemons leaves it
   * off and always reads what is committed.
   */
  keepReads?: boolean;
  /** Postgres with `keepReads`: the invalidation listener's link (default `url`) and checks. For tests. */
  invalidation?: { url?: string; pingIntervalMs?: number; pingTimeoutMs?: number };
}

/**
 * The storage connection for both dialects. `transaction()` is the one way to
 * write several rows atomically: on SQLite it takes the write lock up front
 * (BEGIN IMMEDIATE), so two writers never deadlock on a lock upgrade; on Postgres
 * it is an ordinary transaction in which repositories lock rows with FOR UPDATE.
 */
export class Database {
  readonly db: Kysely<DB>;
  readonly dialect: Dialect;
  private readonly pool: pg.Pool | null = null;
  private readonly sqlite: BetterSqlite3.Database | null = null;
  private readonly statement: ((source: string) => BetterSqlite3.Statement) | null = null;
  /**
   * Write counters per table, seen by every query through `db` (with `keepReads`); on Postgres also
   * moved by the other daemons' writes, through `listener`.
   */
  private readonly writes: WriteGenerations | null = null;
  private readonly listener: InvalidationListener | null = null;
  private observer: QueryObserver | null = null;
  /** Work to run inside each open transaction just before it commits (see `beforeCommit`). */
  private readonly commitHooks = new WeakMap<object, Array<() => Promise<void>>>();
  /** Work to run once each open transaction has committed (see `afterCommit`). */
  private readonly afterHooks = new WeakMap<object, Array<() => void>>();

  constructor(private readonly options: DatabaseOptions) {
    if (options.url.startsWith('sqlite:')) {
      this.dialect = 'sqlite';
      const file = options.url.slice('sqlite:'.length);
      if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      const sqlite = new BetterSqlite3(file, { timeout: options.busyTimeoutMs });
      sqlite.pragma('journal_mode = WAL');
      sqlite.pragma('foreign_keys = ON');
      sqlite.pragma('synchronous = NORMAL');
      sqlite.pragma(`busy_timeout = ${Math.trunc(options.busyTimeoutMs)}`);
      this.sqlite = sqlite;
      this.statement = statementCache(sqlite);
      this.writes = options.keepReads ? new WriteGenerations() : null;
      this.db = new Kysely<DB>({
        dialect: new SqliteDialect({ database: withPrepare(sqlite, this.statement) }),
        plugins: this.writes ? [this.writes] : [],
      });
    } else {
      this.dialect = 'postgres';
      const int8 = (value: string): number => {
        const n = Number(value);
        if (!Number.isSafeInteger(n)) throw new Error('int8 value outside the safe integer range');
        return n;
      };
      const statementTimeoutMs = options.statementTimeoutMs ?? POSTGRES_DEFAULTS.statementTimeoutMs;
      const queryTimeoutMs = options.queryTimeoutMs ?? POSTGRES_DEFAULTS.queryTimeoutMs;
      const keepAliveIdleMs = options.keepAliveIdleMs ?? POSTGRES_DEFAULTS.keepAliveIdleMs;
      const idleInTransactionMs = options.idleInTransactionTimeoutMs ?? POSTGRES_DEFAULTS.idleInTransactionTimeoutMs;
      const pool = new pg.Pool({
        connectionString: options.url,
        max: options.poolMax,
        // pg-pool applies this both to opening a connection and to waiting for a free slot when all are checked out.
        connectionTimeoutMillis: options.connectTimeoutMs,
        idleTimeoutMillis: 30_000,
        keepAlive: keepAliveIdleMs > 0,
        keepAliveInitialDelayMillis: keepAliveIdleMs,
        ...(statementTimeoutMs > 0 ? { statement_timeout: statementTimeoutMs } : {}),
        ...(queryTimeoutMs > 0 ? { query_timeout: queryTimeoutMs } : {}),
        ...(idleInTransactionMs > 0 ? { idle_in_transaction_session_timeout: idleInTransactionMs } : {}),
        types: {
          getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
            oid === 20 ? int8 : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
        },
      });
      // A connection losing its server must never crash the daemon: pg emits 'error' on the
      // client, and pg-pool listens only while the client is idle. A permanent listener on
      // each client covers the time it is checked out (the query in flight fails on its own
      // and the HTTP layer answers 503); the pool re-emits an idle client's error on itself,
      // so it needs one too. Each error is logged once, by its message (never the URL).
      const logged = new WeakSet<Error>();
      const report = (err: Error): void => {
        if (logged.has(err)) return;
        logged.add(err);
        options.logger.warn(
          { err: { message: err.message, code: (err as { code?: unknown }).code } },
          'postgres connection error',
        );
      };
      pool.on('connect', (client) => client.on('error', report));
      pool.on('error', report);
      this.pool = pool;
      this.writes = options.keepReads ? new WriteGenerations() : null;
      this.db = new Kysely<DB>({
        // A transaction's commit moves the generations of what it wrote, as its notification will.
        dialect: new PostgresDialect({
          pool: discardingTimedOutClients(pool, (tables) => this.writes?.noteWrite(tables)),
        }),
        plugins: this.writes ? [this.writes] : [],
      });
      if (this.writes) {
        this.listener = new InvalidationListener({
          url: options.invalidation?.url ?? options.url,
          generations: this.writes,
          logger: options.logger,
          connectTimeoutMs: options.connectTimeoutMs,
          keepAliveIdleMs,
          ...(options.invalidation?.pingIntervalMs ? { pingIntervalMs: options.invalidation.pingIntervalMs } : {}),
          ...(options.invalidation?.pingTimeoutMs ? { pingTimeoutMs: options.invalidation.pingTimeoutMs } : {}),
        });
        void this.listener.start();
      }
    }
  }

  /**
   * A hot-path read, built and compiled once: `build` gets stand-ins for the
   * named parameters, and each `first()` binds the real values to the compiled
   * SQL, skipping the query builder. On SQLite, outside any transaction, the
   * prepared statement runs at once (better-sqlite3 is synchronous) instead of
   * queueing for Kysely's one connection; while a transaction is open on that
   * connection the read waits behind it as any other query does, so it never
   * sees uncommitted rows. Postgres runs it through the pool as usual.
   *
   * With `cache` (and `keepReads`), a row found outside a transaction is kept
   * in memory, frozen and branded `Kept`, until a statement writes to one of
   * `cache.tables` (WriteGenerations counts each write before and after it
   * runs) or `ttlMs` passes. On SQLite the daemon is the only writer of its
   * file, so a kept row is never older than the last commit. On Postgres the
   * other daemons' writes arrive as notifications (daemon/storage/invalidation.ts);
   * while the listener is not connected nothing is served from memory or kept.
   * `ttlMs` bounds how long an edit from outside (another process on the
   * SQLite file, psql, a silent invalidation link) can go unseen. Misses (no
   * row) are not kept.
   */
  prepareRead<P extends Record<string, unknown>, R>(
    build: (db: Kysely<DB>, params: P) => Compilable<R>,
    options: { cache?: ReadCacheOptions } = {},
  ): PreparedRead<P, R> {
    const stand = new Proxy({}, { get: (_t, name) => new ParamRef(String(name)) }) as P;
    const compiled = build(this.db, stand).compile();
    const slots = compiled.parameters.map((v) => (v instanceof ParamRef ? v.name : null));
    const named = slots.filter((n): n is string => n !== null);
    const bind = (params: P): unknown[] =>
      compiled.parameters.map((v, i) => (slots[i] === null ? v : params[slots[i]!]));
    const { statement, sqlite, db, writes } = this;
    const run = async (params: P, trx?: Queryable): Promise<R | undefined> => {
      const values = bind(params);
      if (statement && sqlite && (trx === undefined || trx === db) && !sqlite.inTransaction) {
        return statement(compiled.sql).get(values) as R | undefined;
      }
      const result = await (trx ?? db).executeQuery<R>(CompiledQuery.raw(compiled.sql, values) as CompiledQuery<R>);
      return result.rows[0];
    };
    const cache = options.cache;
    const unannounced = cache?.tables.filter((t) => !ANNOUNCED_TABLES.has(t)) ?? [];
    if (unannounced.length > 0) {
      const names = unannounced.join(', ');
      throw new Error(`prepareRead: ${names} not in ANNOUNCED_TABLES (daemon/storage/invalidation.ts)`);
    }
    if (!cache || !writes) return { first: run };
    const kept = new Map<string, KeptEntry>();
    return {
      async first(params, trx) {
        if (trx !== undefined && trx !== db) return run(params, trx);
        // Postgres with its invalidation listener down: other daemons' writes would go unseen.
        if (!writes.serving) return run(params);
        const key = named.length === 1 ? String(params[named[0]!]) : named.map((n) => String(params[n])).join('\u0000');
        const generation = writes.generation(cache.tables);
        const now = Date.now();
        const hit = kept.get(key);
        if (hit && hit.generation === generation && hit.until > now) return hit.value as Kept<R>;
        const value = await run(params);
        if (value !== undefined && writes.serving && writes.generation(cache.tables) === generation) {
          const row = keep(value as R & object);
          setBounded(kept, key, { value: row, generation, until: now + cache.ttlMs }, cache.maxEntries);
          return row;
        }
        if (hit) kept.delete(key);
        return value;
      },
    };
  }

  /**
   * The kept-rows cache's state: whether it serves (always on SQLite; on Postgres while the invalidation
   * listener is connected), notifications applied and links lost. Null without `keepReads`.
   */
  get cacheState(): { serving: boolean; notifications: number; losses: number } | null {
    if (!this.writes) return null;
    const listener = this.listener;
    return { serving: this.writes.serving, notifications: listener?.received ?? 0, losses: listener?.losses ?? 0 };
  }

  /** Reports every transaction and ping to `observer` (one observer; the last one set wins). */
  observe(observer: QueryObserver): void {
    this.observer = observer;
  }

  /** Runs `fn` in one transaction; commits when it resolves, rolls back when it throws. */
  async transaction<T>(fn: (trx: Queryable) => Promise<T>): Promise<T> {
    const after: Array<() => void> = [];
    const result = await this.observed('transaction', () =>
      this.runTransaction((trx) => {
        this.afterHooks.set(trx, after);
        return this.withCommitHooks(trx, fn).finally(() => this.afterHooks.delete(trx));
      }),
    );
    for (const work of after) {
      try {
        work();
      } catch {
        // Notifications only (metrics, events): the transaction has committed whatever they do.
      }
    }
    return result;
  }

  /**
   * Runs `work` once `trx` has committed (never if it rolls back): for
   * announcing what the transaction did (a metric, an event). Synchronous and
   * must not throw. Outside a transaction of `transaction()`, runs it at once.
   */
  afterCommit(trx: Queryable, work: () => void): void {
    const hooks = this.afterHooks.get(trx);
    if (hooks) hooks.push(work);
    else work();
  }

  /**
   * Runs `work` in `trx` after the transaction's function has returned and just
   * before it commits; if `work` throws, the transaction rolls back. For writes
   * that take a lock every transaction contends for (the audit chain head):
   * taken last, it is held only until the commit. False when `trx` is not a
   * transaction open in `transaction()` (the caller then does the work at once).
   */
  beforeCommit(trx: Queryable, work: () => Promise<void>): boolean {
    const hooks = this.commitHooks.get(trx);
    if (!hooks) return false;
    hooks.push(work);
    return true;
  }

  private async withCommitHooks<T>(trx: Queryable, fn: (trx: Queryable) => Promise<T>): Promise<T> {
    const hooks: Array<() => Promise<void>> = [];
    this.commitHooks.set(trx, hooks);
    try {
      const result = await fn(trx);
      // By index: a hook may add another.
      for (let i = 0; i < hooks.length; i++) await hooks[i]!();
      return result;
    } finally {
      this.commitHooks.delete(trx);
    }
  }

  private async observed<T>(operation: 'transaction' | 'ping', work: () => Promise<T>): Promise<T> {
    const observer = this.observer;
    if (!observer) return work();
    const start = performance.now();
    try {
      const result = await work();
      observer(operation, (performance.now() - start) / 1000, null);
      return result;
    } catch (err) {
      observer(operation, (performance.now() - start) / 1000, err);
      throw err;
    }
  }

  private async runTransaction<T>(fn: (trx: Queryable) => Promise<T>): Promise<T> {
    if (this.dialect === 'postgres') return this.db.transaction().execute((trx) => fn(trx));
    return this.db.connection().execute(async (conn) => {
      await sql`begin immediate`.execute(conn);
      try {
        const result = await fn(conn);
        await sql`commit`.execute(conn);
        return result;
      } catch (err) {
        await sql`rollback`.execute(conn).catch(() => undefined);
        throw err;
      }
    });
  }

  /** A cheap round trip, bounded in time; used by readiness. */
  async ping(timeoutMs = 2000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await this.observed('ping', () =>
        Promise.race([
          sql`select 1`.execute(this.db),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`database did not answer within ${timeoutMs} ms`)), timeoutMs);
          }),
        ]),
      );
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    await this.listener?.stop();
    await this.db.destroy();
  }
}

/** The Postgres bounds a caller leaves out (the config's defaults, schemas/config.schema.json). */
export const POSTGRES_DEFAULTS = {
  statementTimeoutMs: 15_000,
  queryTimeoutMs: 20_000,
  keepAliveIdleMs: 10_000,
  idleInTransactionTimeoutMs: 10_000,
} as const;

/**
 * The pool as Kysely sees it, with one change: a client whose query hit pg's
 * `query_timeout` still has that query on the wire (pg gives up waiting but
 * neither cancels it nor closes the link), so every later query on it would
 * queue behind it. Such a client fails its further queries at once (Kysely's
 * rollback included) and goes back to the pool with the error, which closes
 * its socket instead of reusing it.
 */
function discardingTimedOutClients(pool: pg.Pool, committed: (tables: readonly string[]) => void): PostgresPool {
  const views = new WeakMap<pg.PoolClient, PostgresPoolClient>();
  const view = (client: pg.PoolClient): PostgresPoolClient => {
    let broken: Error | null = null;
    const send = (text: string, values: ReadonlyArray<unknown>) => {
      if (broken) return Promise.reject(broken);
      return client.query(text, values as unknown[]).catch((err: unknown) => {
        if (err instanceof Error && err.message === 'Query read timeout') broken = err;
        throw err;
      });
    };
    // Every connection announces its writes to kept tables, so the daemons' caches drop them (invalidation.ts).
    const announcer = new WriteAnnouncer(committed);
    const query = (text: string, values: ReadonlyArray<unknown>) => announcer.query(text, values, send);
    return {
      // Kysely's type also has a cursor overload, used only with a `cursor` dialect option (not set here).
      query: query as unknown as PostgresPoolClient['query'],
      release: (destroy?: boolean) => client.release(broken ?? destroy),
    };
  };
  return {
    async connect() {
      const client = await pool.connect();
      let v = views.get(client);
      if (!v) {
        v = view(client);
        views.set(client, v);
      }
      return v;
    },
    end: () => pool.end(),
  };
}

/** Statements kept prepared; the daemon's queries are a few hundred distinct SQL texts. */
const STATEMENT_CACHE_SIZE = 500;

/**
 * Kysely's SQLite driver prepares every statement again on every query (about a
 * tenth of an authenticated read's CPU). better-sqlite3 statements are reusable,
 * and Kysely runs one query at a time on its single connection, so the same SQL
 * text can share one prepared statement. Bounded, oldest-first eviction.
 */
function statementCache(sqlite: BetterSqlite3.Database): (source: string) => BetterSqlite3.Statement {
  const cache = new Map<string, BetterSqlite3.Statement>();
  return (source) => {
    let stmt = cache.get(source);
    if (!stmt) {
      stmt = sqlite.prepare(source);
      setBounded(cache, source, stmt, STATEMENT_CACHE_SIZE);
    }
    return stmt;
  };
}

/** The connection as Kysely's dialect sees it, with `prepare` served from the statement cache. */
function withPrepare(
  sqlite: BetterSqlite3.Database,
  prepare: (source: string) => BetterSqlite3.Statement,
): BetterSqlite3.Database {
  return new Proxy(sqlite, {
    get(target, prop, receiver) {
      if (prop === 'prepare') return prepare;
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'SQLITE_BUSY',
  'SQLITE_LOCKED',
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '53300', // too_many_connections
  '57014', // query_canceled: statement_timeout
]);

/** True for errors that mean "the database is not reachable right now" rather than a bug. */
export function isUnavailableError(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  const e = err as { code?: unknown; message?: unknown };
  if (typeof e.code === 'string' && (UNAVAILABLE_CODES.has(e.code) || e.code.startsWith('08'))) return true;
  const msg = typeof e.message === 'string' ? e.message : '';
  // pg and pg-pool 8.x: 'Connection terminated unexpectedly' (link closed or reset mid-query),
  // 'Connection terminated due to connection timeout' (connect_timeout_ms opening one),
  // 'timeout exceeded when trying to connect' (connect_timeout_ms waiting for a free slot),
  // 'Query read timeout' (query_timeout_ms: no answer, e.g. a partition).
  return /Connection terminated|timeout exceeded when trying to connect|Query read timeout|connect ECONNREFUSED|Client has encountered a connection error|Connection ended unexpectedly|database did not answer/i.test(
    msg,
  );
}

/** What `databaseFromConfig` may change from the config: a tool's own pool size, bounds or file, and the logger. */
export type DatabaseFromConfigOptions = Partial<Omit<DatabaseOptions, 'logger'>> & { logger: Logger };

/**
 * The one way a `Database` is built from the configuration (the daemon, `migrate`,
 * `keen-admin init` and `doctor`, restore's check of a backup): every
 * `database.*` key, then `options`, which win (a tool's pool size, an operator
 * command's unbounded statements, restore's copy of the file).
 */
export function databaseFromConfig(
  config: { database: ResolvedConfig['database'] },
  options: DatabaseFromConfigOptions,
): Database {
  const c = config.database;
  return new Database({
    url: c.url,
    poolMax: c.pool_max,
    connectTimeoutMs: c.connect_timeout_ms,
    busyTimeoutMs: c.busy_timeout_ms,
    statementTimeoutMs: c.statement_timeout_ms,
    queryTimeoutMs: c.query_timeout_ms,
    keepAliveIdleMs: c.keepalive_idle_ms,
    idleInTransactionTimeoutMs: c.idle_in_transaction_timeout_ms,
    ...options,
  });
}
