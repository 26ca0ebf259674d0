import pg from 'pg';
import type { Logger } from '../logger.js';
import type { WriteGenerations } from './write-generations.js';

/**
 * Cache invalidation across the daemons of a Postgres fleet (docs/ARCHITECTURE.md, "Caches and the hot
 * path"). Every connection of a `Database` on Postgres announces its writes to the tables some prepared
 * read keeps with `pg_notify` (WriteAnnouncer); every daemon that keeps rows listens on one dedicated
 * connection (InvalidationListener) and moves its per-table write generations on each notification,
 * which drops what it kept of those tables.
 */
export const INVALIDATION_CHANNEL = 'keen_cache';

/**
 * The tables prepared reads may keep rows of (Database.prepareRead refuses any other): their writes are
 * announced. gateway_meta is written a few times in a database's life; the storage tests read it.
 */
export const ANNOUNCED_TABLES: ReadonlySet<string> = new Set([
  'users',
  'api_keys',
  'refresh_tokens',
  'credit_accounts',
  'gateway_meta',
]);

/** A write whose tables cannot be told (DDL, raw SQL): every kept row is dropped. */
const EVERY_TABLE = '*';
const WRITE_HEADS = new Set(['insert', 'update', 'delete', 'with', 'merge']);
const SCHEMA_HEADS = new Set([
  'create',
  'alter',
  'drop',
  'truncate',
  'copy',
  'do',
  'call',
  'grant',
  'revoke',
  'comment',
]);
/**
 * The table after INSERT INTO, UPDATE, DELETE FROM, MERGE INTO (schema-qualified or not); not
 * SELECT ... FOR UPDATE, nor an upsert's DO UPDATE.
 */
const WRITTEN =
  /\b(?:insert\s+into|(?<!\bfor\s+)(?<!\bdo\s+)update|delete\s+from|merge\s+into)\s+(?:"?\w+"?\.)?"?(\w+)"?/gi;

type Send = (text: string, values: ReadonlyArray<unknown>) => Promise<unknown>;

/**
 * The announced tables `text` writes, `['*']` when it may write tables it does not name, null when it
 * writes none of them. Over-announcing costs a cache refill; under-announcing would serve a stale row.
 */
export function announcedTables(text: string): string[] | null {
  const head = /^\s*(\w+)/.exec(text)?.[1]?.toLowerCase() ?? '';
  if (SCHEMA_HEADS.has(head)) return [EVERY_TABLE];
  if (!WRITE_HEADS.has(head)) return null;
  const found = new Set<string>();
  let any = false;
  for (const m of text.matchAll(WRITTEN)) {
    any = true;
    if (ANNOUNCED_TABLES.has(m[1]!)) found.add(m[1]!);
  }
  if (!any) return head === 'with' ? null : [EVERY_TABLE];
  return found.size > 0 ? [...found] : null;
}

/**
 * The statement that announces `tables`. Delivered to listeners only when the transaction it runs in
 * commits (never on a rollback). The payload names the schema, so fleets sharing one database (a schema
 * each) do not drop each other's rows. Table names come from `announcedTables` (\w+ only).
 */
function notifySql(tables: Iterable<string>): string {
  return `select pg_notify('${INVALIDATION_CHANNEL}', '${[...tables].join(',')} ' || current_schema())`;
}

/**
 * One pool connection's writes, seen query by query (Kysely sends `begin`, the statements, then
 * `commit` or `rollback` on one connection). In a transaction the announced tables are collected and
 * one `pg_notify` goes with the `commit`, in the same round trip (a simple-protocol query of two
 * statements): notified exactly when the writes commit. A write outside a transaction is announced
 * right after it, before its caller hears it is done.
 */
export class WriteAnnouncer {
  private inTransaction = false;
  private failed = false;
  private readonly tables = new Set<string>();

  /**
   * `committed`: told the tables once a transaction that wrote them has committed. This daemon's own
   * reads made during the transaction (on other connections, from the last commit) may have kept the
   * old rows, and its own notification arrives only later.
   */
  constructor(private readonly committed: (tables: readonly string[]) => void = () => undefined) {}

  async query(text: string, values: ReadonlyArray<unknown>, send: Send): Promise<unknown> {
    const head = /^\s*(\w+)/.exec(text)?.[1]?.toLowerCase() ?? '';
    if (head === 'begin' || head === 'start') {
      this.inTransaction = true;
      this.failed = false;
      this.tables.clear();
      return send(text, values);
    }
    if (head === 'commit' || (head === 'rollback' && !/^\s*rollback\s+to\b/i.test(text))) {
      const announce = head === 'commit' && !this.failed && this.tables.size > 0 && values.length === 0;
      const tables = [...this.tables];
      this.inTransaction = false;
      this.tables.clear();
      if (!announce) return send(text, values);
      const results = await send(`${notifySql(tables)}; ${text}`, []);
      this.committed(tables);
      // Two statements answer two results; Kysely reads the commit's (its command tag).
      return Array.isArray(results) ? results[results.length - 1] : results;
    }
    const tables = announcedTables(text);
    if (this.inTransaction) {
      if (tables) for (const t of tables) this.tables.add(t);
      try {
        return await send(text, values);
      } catch (err) {
        // An aborted transaction ends in a rollback whatever its commit says: nothing to announce.
        this.failed = true;
        throw err;
      }
    }
    const result = await send(text, values);
    // The write has committed; a failed announcement leaves other daemons on their bound (the rows' TTL).
    if (tables) await send(notifySql(tables), []).catch(() => undefined);
    return result;
  }
}

export interface InvalidationListenerOptions {
  /** The connection URL (the pool's; tests route it through a fault proxy). */
  url: string;
  generations: WriteGenerations;
  logger: Logger;
  /** How often the listening link is checked with a round trip. Default 1000. */
  pingIntervalMs?: number;
  /** A ping unanswered this long means the link is dead. Default 2000. */
  pingTimeoutMs?: number;
  connectTimeoutMs?: number;
  keepAliveIdleMs?: number;
}

/** What the listener uses when the caller leaves them out. */
export const LISTENER_DEFAULTS = {
  pingIntervalMs: 1000,
  pingTimeoutMs: 2000,
  retryMinMs: 100,
  retryMaxMs: 2000,
} as const;

/**
 * One dedicated connection per daemon, LISTENing on the invalidation channel. While it is not connected
 * (before the first connection, after an error, a close or an unanswered ping) the generations are not
 * `serving`: prepared reads go to Postgres and keep nothing. Each change of state drops every kept row,
 * so nothing kept before a gap (when notifications may have been missed) is served after it. A ping
 * every `pingIntervalMs` notices a link that went silent (a partition) within interval + timeout.
 */
export class InvalidationListener {
  private client: pg.Client | null = null;
  private schema: string | null = null;
  private stopped = false;
  private retryMs: number = LISTENER_DEFAULTS.retryMinMs;
  private retryTimer: NodeJS.Timeout | null = null;
  private pingTimer: NodeJS.Timeout | null = null;
  private connecting: Promise<void> | null = null;
  /** Notifications applied (for tests and diagnostics). */
  received = 0;
  /** Times the link was lost after being up. */
  losses = 0;
  private readonly pingIntervalMs: number;
  private readonly pingTimeoutMs: number;

  constructor(private readonly options: InvalidationListenerOptions) {
    this.pingIntervalMs = options.pingIntervalMs ?? LISTENER_DEFAULTS.pingIntervalMs;
    this.pingTimeoutMs = options.pingTimeoutMs ?? LISTENER_DEFAULTS.pingTimeoutMs;
    options.generations.setServing(false);
  }

  /** True while notifications are being received, so kept rows may be served. */
  get connected(): boolean {
    return this.options.generations.serving;
  }

  /** Connects in the background (retrying with backoff); resolves once the first attempt has ended. */
  start(): Promise<void> {
    this.connecting ??= this.connect();
    return this.connecting;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.retryTimer = this.pingTimer = null;
    const client = this.client;
    this.client = null;
    this.options.generations.setServing(false);
    if (!client) return;
    // A silent link would hold end() forever: bounded, then the socket is closed.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([client.end().catch(() => undefined), new Promise((r) => (timer = setTimeout(r, 1000)))]);
    clearTimeout(timer);
    destroySocket(client);
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const o = this.options;
    const keepAliveIdleMs = o.keepAliveIdleMs ?? 10_000;
    const client = new pg.Client({
      connectionString: o.url,
      connectionTimeoutMillis: o.connectTimeoutMs ?? 5000,
      keepAlive: keepAliveIdleMs > 0,
      keepAliveInitialDelayMillis: keepAliveIdleMs,
      application_name: 'keen-gateway cache listener',
    });
    // Handled from the start: an 'error' event without a listener would crash the daemon.
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, null));
    client.on('notification', (msg) => this.notified(client, msg));
    this.client = client;
    try {
      await client.connect();
      const { rows } = await client.query<{ schema: string }>('select current_schema() as schema');
      this.schema = rows[0]?.schema ?? null;
      await client.query(`listen ${INVALIDATION_CHANNEL}`);
      if (this.client !== client || this.stopped) {
        await client.end().catch(() => undefined);
        return;
      }
      // From here every committed write is delivered; anything kept before may have missed one.
      o.generations.setServing(true);
      this.retryMs = LISTENER_DEFAULTS.retryMinMs;
      this.pingTimer = setInterval(() => void this.ping(client), this.pingIntervalMs);
      this.pingTimer.unref();
    } catch (err) {
      this.lost(client, err as Error);
    }
  }

  private notified(client: pg.Client, msg: pg.Notification): void {
    if (client !== this.client || msg.channel !== INVALIDATION_CHANNEL || !msg.payload) return;
    const space = msg.payload.indexOf(' ');
    if (space < 0 || msg.payload.slice(space + 1) !== this.schema) return;
    this.received++;
    this.options.generations.noteWrite(msg.payload.slice(0, space).split(','));
  }

  private async ping(client: pg.Client): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        client.query('select 1'),
        new Promise((_, reject) => {
          const silent = new Error(`no answer to a ping within ${this.pingTimeoutMs} ms`);
          timer = setTimeout(() => reject(silent), this.pingTimeoutMs);
        }),
      ]);
    } catch (err) {
      this.lost(client, err as Error);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The link is gone (error, close, silence): stop serving kept rows, drop the client, retry. */
  private lost(client: pg.Client, err: Error | null): void {
    if (client !== this.client) return;
    this.client = null;
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
    if (this.options.generations.serving) this.losses++;
    this.options.generations.setServing(false);
    // A silent link would hold end() forever: close the socket itself.
    destroySocket(client);
    void client.end().catch(() => undefined);
    if (this.stopped) return;
    this.options.logger.warn(
      {
        err: err ? { message: err.message, code: (err as { code?: unknown }).code } : undefined,
        retryMs: this.retryMs,
      },
      'postgres cache listener lost: kept rows are not served until it is back',
    );
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.connect();
    }, this.retryMs);
    this.retryTimer.unref();
    this.retryMs = Math.min(this.retryMs * 2, LISTENER_DEFAULTS.retryMaxMs);
  }
}

/** Closes a client's socket at once (pg's `end()` waits for the server, which a partition never lets answer). */
function destroySocket(client: pg.Client): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}
