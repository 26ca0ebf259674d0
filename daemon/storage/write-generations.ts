import type {
  KyselyPlugin,
  PluginTransformQueryArgs,
  PluginTransformResultArgs,
  QueryResult,
  RootOperationNode,
  UnknownRow,
} from 'kysely';

/** Statement kinds that change rows or schema; anything else (selects) leaves the generations alone. */
const WRITE_KINDS = new Set([
  'InsertQueryNode',
  'UpdateQueryNode',
  'DeleteQueryNode',
  'MergeQueryNode',
  'CreateTableNode',
  'AlterTableNode',
  'DropTableNode',
]);
/** Raw SQL that may write (`sql\`...\``): its tables are not parsed, so it counts as a write to every table. */
const RAW_WRITE = /\b(insert|update|delete|replace|alter|drop)\b/i;
const EVERY_TABLE = '*';

/**
 * A counter per table, bumped by every statement that writes to it, as a
 * Kysely plugin: before the statement runs and again once it has run. A cached
 * read made while the counters of its tables did not move cannot hold a row
 * older than the last write. Writes whose tables cannot be told (raw SQL that
 * may write) bump every table: too much invalidation, never too little. On
 * Postgres the other daemons' writes move the counters too (`noteWrite`,
 * from daemon/storage/invalidation.ts), and `serving` says whether they can.
 */
export class WriteGenerations implements KyselyPlugin {
  private readonly counters = new Map<string, number>();
  private total = 0;
  private readonly pending = new WeakMap<object, string[]>();
  private live = true;

  /**
   * Whether kept rows may be served and kept. Always on SQLite (this daemon is the one writer). On
   * Postgres only while the invalidation listener is connected (daemon/storage/invalidation.ts): other
   * daemons' writes are seen through it alone.
   */
  get serving(): boolean {
    return this.live;
  }

  /** Turns serving on or off; either way every table moves, so nothing kept before the change is served after it. */
  setServing(live: boolean): void {
    this.live = live;
    this.advance([EVERY_TABLE]);
  }

  /**
   * A write the plugin did not count as it ran: announced by another daemon (a notification), or a
   * commit of this daemon's on Postgres, which makes its writes visible to the other connections.
   */
  noteWrite(tables: readonly string[]): void {
    this.advance(tables);
  }

  /** The sum of the tables' counters (and of the every-table counter): it moves when any of them is written. */
  generation(tables: readonly string[]): number {
    let sum = this.counters.get(EVERY_TABLE) ?? 0;
    for (const t of tables) sum += this.counters.get(t) ?? 0;
    return sum;
  }

  /** How many write statements were seen (for tests and diagnostics). */
  get writes(): number {
    return this.total;
  }

  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    const tables = writtenTables(args.node);
    if (tables) {
      this.bump(tables);
      this.pending.set(args.queryId, tables);
    }
    return args.node;
  }

  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    const tables = this.pending.get(args.queryId);
    if (tables) {
      this.pending.delete(args.queryId);
      this.bump(tables);
    }
    return args.result;
  }

  private bump(tables: string[]): void {
    this.total++;
    this.advance(tables);
  }

  private advance(tables: readonly string[]): void {
    for (const t of tables) this.counters.set(t, (this.counters.get(t) ?? 0) + 1);
  }
}

/** The tables a statement writes, `['*']` when it may write but they cannot be told, null for a read. */
function writtenTables(node: RootOperationNode): string[] | null {
  if (node.kind === 'RawNode') {
    return RAW_WRITE.test(node.sqlFragments.join(' ')) ? [EVERY_TABLE] : null;
  }
  if (!WRITE_KINDS.has(node.kind)) return null;
  const found = new Set<string>();
  collectTables(node, found, 0);
  return found.size > 0 ? [...found] : [EVERY_TABLE];
}

/** Every TableNode under `node` (the written table and any it reads: more than needed, never less). */
function collectTables(node: unknown, found: Set<string>, depth: number): void {
  if (depth > 64 || node === null || typeof node !== 'object') return;
  if (Array.isArray(node)) {
    for (const child of node) collectTables(child, found, depth + 1);
    return;
  }
  const n = node as {
    kind?: unknown;
    table?: { identifier?: { name?: unknown } };
  };
  if (n.kind === 'TableNode' && typeof n.table?.identifier?.name === 'string') {
    found.add(n.table.identifier.name);
    return;
  }
  for (const value of Object.values(node)) collectTables(value, found, depth + 1);
}
