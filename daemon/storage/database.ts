import { mkdirSync } from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect, sql, type Transaction as KyselyTransaction } from 'kysely';
import pg from 'pg';
import type { Logger } from '../logger.js';
import type { DB } from './schema.js';

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

export interface DatabaseOptions {
  url: string;
  poolMax: number;
  connectTimeoutMs: number;
  busyTimeoutMs: number;
  logger: Logger;
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
  private observer: QueryObserver | null = null;

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
      this.db = new Kysely<DB>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });
    } else {
      this.dialect = 'postgres';
      const int8 = (value: string): number => {
        const n = Number(value);
        if (!Number.isSafeInteger(n)) throw new Error('int8 value outside the safe integer range');
        return n;
      };
      const pool = new pg.Pool({
        connectionString: options.url,
        max: options.poolMax,
        connectionTimeoutMillis: options.connectTimeoutMs,
        idleTimeoutMillis: 30_000,
        types: {
          getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
            oid === 20 ? int8 : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
        },
      });
      // An idle client losing its server must not crash the daemon; the next query reports it.
      pool.on('error', (err) => options.logger.warn({ err: { message: err.message } }, 'postgres idle client error'));
      this.pool = pool;
      this.db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
    }
  }

  /** Reports every transaction and ping to `observer` (one observer; the last one set wins). */
  observe(observer: QueryObserver): void {
    this.observer = observer;
  }

  /** Runs `fn` in one transaction; commits when it resolves, rolls back when it throws. */
  async transaction<T>(fn: (trx: Queryable) => Promise<T>): Promise<T> {
    return this.observed('transaction', () => this.runTransaction(fn));
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
      await this.observed('ping', () => Promise.race([
        sql`select 1`.execute(this.db),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`database did not answer within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]));
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }
}

/** Statements kept prepared; the daemon's queries are a few hundred distinct SQL texts. */
const STATEMENT_CACHE_SIZE = 500;

/**
 * Kysely's SQLite driver prepares every statement again on every query (about a
 * tenth of an authenticated read's CPU). better-sqlite3 statements are reusable,
 * and Kysely runs one query at a time on its single connection, so the same SQL
 * text can share one prepared statement. Bounded, oldest-first eviction.
 */
function withStatementCache(sqlite: BetterSqlite3.Database): BetterSqlite3.Database {
  const cache = new Map<string, BetterSqlite3.Statement>();
  const prepare = (source: string): BetterSqlite3.Statement => {
    let stmt = cache.get(source);
    if (!stmt) {
      stmt = sqlite.prepare(source);
      if (cache.size >= STATEMENT_CACHE_SIZE) cache.delete(cache.keys().next().value as string);
      cache.set(source, stmt);
    }
    return stmt;
  };
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
]);

/** True for errors that mean "the database is not reachable right now" rather than a bug. */
export function isUnavailableError(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  const e = err as { code?: unknown; message?: unknown };
  if (typeof e.code === 'string' && (UNAVAILABLE_CODES.has(e.code) || e.code.startsWith('08'))) return true;
  const msg = typeof e.message === 'string' ? e.message : '';
  return /Connection terminated|timeout exceeded when trying to connect|connect ECONNREFUSED|Client has encountered a connection error|Connection ended unexpectedly|database did not answer/i.test(
    msg,
  );
}
