import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  existsSync,
  fsyncSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { CHECKPOINT_FILE, SIGNING_KEY_FILE } from '../audit/checkpoints.js';
import type { ResolvedConfig } from '../config/load.js';
import { redactUrl } from '../config/load.js';
import { VERSION } from '../version.js';
import { writeTar, type TarInput } from './tar.js';

/**
 * A backup of a SQLite daemon (docs/DEPLOY.md, "Backups"): one tar file holding
 *
 * - `manifest.json`: what the file is, when and from where it was taken, the
 *   size and sha256 of every other member, and row counts to compare with;
 * - `keen.db`: the database, copied with SQLite's online backup API (one read
 *   transaction: a consistent snapshot while the daemon writes);
 * - `data/jwt-secret`, `data/instance-id`: the data directory's files the
 *   database depends on (the generated signing secret seals TOTP secrets);
 * - `audit/audit-signing-key.pem`, `audit/audit-checkpoints.jsonl`,
 *   `audit/audit-<first>-<last>.jsonl`: the audit archive directory's signing
 *   key, signed checkpoints and the retention archives the database refers to.
 */

export const MANIFEST = 'manifest.json';
export const DATABASE_MEMBER = 'keen.db';
export const FORMAT = 'keen-gateway-backup';
export const FORMAT_VERSION = 1;

/** Where the "Backups" section tells how to back up what this does not cover. */
export const DOCS_SECTION = 'docs/DEPLOY.md, "Backups"';

/** The data directory's files a restore needs besides the database. */
export const DATA_FILES = ['jwt-secret', 'instance-id'] as const;
/** The audit archive directory's files besides the retention archives. */
export const AUDIT_FILES = [SIGNING_KEY_FILE, CHECKPOINT_FILE] as const;
/** A retention archive's name (daemon/audit/retention.ts `archiveFileName`). */
export const ARCHIVE_NAME = /^audit-\d{12}-\d{12}\.jsonl$/;

export type MemberPlace = { dir: 'data' | 'audit'; file: string } | { dir: 'database' };

/** Where a member of a backup belongs, or null for a name no backup holds. */
export function placeOf(name: string): MemberPlace | null {
  if (name === DATABASE_MEMBER) return { dir: 'database' };
  const m = /^(data|audit)\/([^/]+)$/.exec(name);
  if (!m) return null;
  const [, dir, file] = m as unknown as [string, 'data' | 'audit', string];
  if (dir === 'data' && (DATA_FILES as readonly string[]).includes(file)) return { dir, file };
  if (dir === 'audit' && ((AUDIT_FILES as readonly string[]).includes(file) || ARCHIVE_NAME.test(file)))
    return { dir, file };
  return null;
}

export interface ManifestMember {
  name: string;
  size: number;
  sha256: string;
}

/** Row counts of the snapshot, recorded at backup and compared at restore. */
export interface SnapshotCounts {
  users: number;
  credit_ledger_entries: number;
  audit_entries: number;
  audit_archived_entries: number;
  audit_head_seq: number;
}

export interface Manifest {
  format: typeof FORMAT;
  version: typeof FORMAT_VERSION;
  created_at: string;
  gateway_version: string;
  source: {
    /** The database URL (sqlite:PATH) the snapshot was taken from. */
    database: string;
    data_dir: string;
    audit_archive_dir: string;
  };
  /** Migrations applied to the snapshot, oldest first. */
  migrations: string[];
  counts: SnapshotCounts;
  /** False when the daemon takes JWT_SECRET from its environment: the secret is then not in this file. */
  jwt_secret_file: boolean;
  /** Every member except the manifest itself. */
  members: ManifestMember[];
}

/** A refusal or failure of backup or restore, with a stable code for `--json`. */
export class BackupError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'BackupError';
  }
}

/** The SQLite file of `config`, or a BackupError for Postgres (whose own tools do this) and `:memory:`. */
export function sqliteFileOf(config: ResolvedConfig, what: 'backup' | 'restore'): string {
  const url = config.database.url;
  if (!url.startsWith('sqlite:')) {
    throw new BackupError(
      'POSTGRES_UNSUPPORTED',
      `the database is Postgres (${redactUrl(url)}): ${what === 'backup' ? 'keen-admin backup' : 'keen-gateway restore'} handles SQLite only; ` +
        `use Postgres's own tools (pg_dump, pg_basebackup, or point-in-time recovery with WAL archiving) and back up the data directory's secrets and audit archive as ${DOCS_SECTION} describes`,
    );
  }
  const file = url.slice('sqlite:'.length);
  if (file === ':memory:')
    throw new BackupError(
      'UNSUPPORTED_DATABASE',
      `the database is in memory (${url}): there is nothing on disk to ${what}`,
    );
  return file;
}

export function sha256File(file: string): { size: number; sha256: string } {
  const hash = createHash('sha256');
  const fd = openSync(file, 'r');
  const buf = Buffer.alloc(1 << 20);
  let size = 0;
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      size += n;
    }
  } finally {
    closeSync(fd);
  }
  return { size, sha256: hash.digest('hex') };
}

/** Flushes a directory's entries (renames, new files) to disk; some filesystems refuse, which is harmless. */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Not supported here (some network filesystems): the rename itself is still atomic.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Counts and migrations read from an open snapshot. */
export function readCounts(db: BetterSqlite3.Database): SnapshotCounts {
  const count = (q: string) => Number((db.prepare(q).get() as { n: number | bigint | null }).n ?? 0);
  return {
    users: count('select count(*) as n from users'),
    credit_ledger_entries: count('select count(*) as n from credit_ledger'),
    audit_entries: count('select count(*) as n from audit_log'),
    audit_archived_entries: count('select coalesce(sum(entries), 0) as n from audit_archive'),
    audit_head_seq: count("select coalesce(max(seq), 0) as n from audit_head where id = 'chain'"),
  };
}

export function readMigrations(db: BetterSqlite3.Database): string[] {
  const exists = db.prepare("select 1 from sqlite_master where type = 'table' and name = 'kysely_migration'").get();
  if (!exists) return [];
  return (db.prepare('select name from kysely_migration order by name').all() as Array<{ name: string }>).map(
    (r) => r.name,
  );
}

/** `PRAGMA integrity_check` (and foreign keys): null when the file is sound, else what SQLite said. */
export function integrityProblem(db: BetterSqlite3.Database): string | null {
  const rows = db.pragma('integrity_check') as Array<{ integrity_check: string }>;
  if (rows.length !== 1 || rows[0]!.integrity_check !== 'ok')
    return rows
      .slice(0, 5)
      .map((r) => r.integrity_check)
      .join('; ');
  const fk = db.pragma('foreign_key_check') as Array<{ table: string; parent: string }>;
  if (fk.length > 0) return `${fk.length} row(s) break a foreign key (first: ${fk[0]!.table} -> ${fk[0]!.parent})`;
  return null;
}

/** Copies a file that a daemon may append to (the checkpoints): only complete lines. */
function copyCompleteLines(from: string, to: string): void {
  const text = readFileSync(from);
  const end = text.lastIndexOf(0x0a);
  writeFileSync(to, end === -1 ? Buffer.alloc(0) : text.subarray(0, end + 1), { mode: 0o600, flag: 'wx' });
}

export interface BackupOptions {
  config: ResolvedConfig;
  /** The file to write. */
  to: string;
  /** Replace `to` when it exists. */
  force?: boolean;
}

export interface BackupResult {
  file: string;
  size: number;
  manifest: Manifest;
  /** Things the operator must know (e.g. a secret this file cannot hold). */
  notes: string[];
}

/**
 * Takes a backup of a (running or stopped) SQLite daemon into one tar file,
 * mode 0600, written beside `to` and renamed into place once complete.
 *
 * Order matters for consistency with a running daemon: the checkpoints are
 * read before the database is copied (each names a seq that the snapshot then
 * holds), and the retention archives after it (each archive the snapshot
 * records was written before its rows were deleted).
 */
export async function createBackup(options: BackupOptions): Promise<BackupResult> {
  const { config } = options;
  const dbFile = sqliteFileOf(config, 'backup');
  if (!existsSync(dbFile))
    throw new BackupError(
      'NOT_FOUND',
      `no database at ${dbFile} (check --config, KEEN_DATA_DIR and KEEN_DATABASE_URL)`,
    );
  const dest = path.resolve(options.to);
  const destDir = path.dirname(dest);
  if (!existsSync(destDir) || !statSync(destDir).isDirectory())
    throw new BackupError('NOT_FOUND', `${destDir} is not a directory`);
  if (existsSync(dest)) {
    if (!statSync(dest).isFile())
      throw new BackupError('ALREADY_EXISTS', `${dest} exists and is not a file: --to names the backup file to write`);
    if (!options.force) throw new BackupError('ALREADY_EXISTS', `${dest} exists; pass --force to replace it`);
  }
  const notes: string[] = [];
  // Beside the destination: the finished archive is renamed, never copied, into place.
  const work = mkdtempSync(path.join(destDir, '.keen-backup-'));
  const partial = `${dest}.${randomBytes(6).toString('hex')}.partial`;
  try {
    const inputs: TarInput[] = [];
    const stage = (name: string, copy: (to: string) => void) => {
      const staged = path.join(work, name.replace('/', '__'));
      copy(staged);
      inputs.push({ name, path: staged });
    };

    // 1. The data directory's secrets, and the checkpoints before the database (see above).
    for (const file of DATA_FILES) {
      const from = path.join(config.data_dir, file);
      if (existsSync(from)) stage(`data/${file}`, (to) => copyFileSync(from, to));
    }
    const jwtSecretFile = existsSync(path.join(config.data_dir, 'jwt-secret'));
    if (!jwtSecretFile) {
      notes.push(
        `no ${path.join(config.data_dir, 'jwt-secret')}: the daemon takes JWT_SECRET from its environment, and this backup does not hold it; ` +
          'keep JWT_SECRET (and JWT_PREVIOUS_SECRETS) backed up separately: without it the TOTP secrets in the database cannot be opened',
      );
    }
    const archiveDir = config.audit.archive_dir;
    const keyFile = path.join(archiveDir, SIGNING_KEY_FILE);
    if (existsSync(keyFile)) stage(`audit/${SIGNING_KEY_FILE}`, (to) => copyFileSync(keyFile, to));
    const checkpoints = path.join(archiveDir, CHECKPOINT_FILE);
    if (existsSync(checkpoints)) stage(`audit/${CHECKPOINT_FILE}`, (to) => copyCompleteLines(checkpoints, to));

    // 2. The database: SQLite's online backup, all pages in one step, so one read transaction
    // (WAL: the daemon keeps writing meanwhile) and no restart however busy the daemon is.
    const snapshot = path.join(work, DATABASE_MEMBER);
    const source = new BetterSqlite3(dbFile, { fileMustExist: true, timeout: config.database.busy_timeout_ms });
    try {
      await source.backup(snapshot, { progress: () => 0x7fffffff });
    } finally {
      source.close();
    }

    // 3. The snapshot on its own: one file (no WAL beside it), sound, and what it holds.
    let counts: SnapshotCounts;
    let migrations: string[];
    let archives: string[];
    const db = new BetterSqlite3(snapshot, { fileMustExist: true });
    try {
      db.pragma('journal_mode = DELETE');
      const problem = integrityProblem(db);
      if (problem)
        throw new BackupError(
          'INTEGRITY',
          `the snapshot fails PRAGMA integrity_check: ${problem} (the live database may be damaged: do not overwrite older backups)`,
        );
      counts = readCounts(db);
      migrations = readMigrations(db);
      archives = (db.prepare('select file from audit_archive order by first_seq').all() as Array<{ file: string }>).map(
        (r) => r.file,
      );
    } finally {
      db.close();
    }
    inputs.push({ name: DATABASE_MEMBER, path: snapshot });

    // 4. The retention archives the snapshot refers to: without them audit verify cannot re-check the archived part.
    for (const recorded of archives) {
      const name = path.basename(recorded);
      if (!ARCHIVE_NAME.test(name))
        throw new BackupError(
          'INVALID_ARCHIVE',
          `the database records an audit archive named ${JSON.stringify(recorded)}, which is not an archive name`,
        );
      const from = path.join(archiveDir, name);
      if (!existsSync(from)) {
        throw new BackupError(
          'MISSING_ARCHIVE',
          `the audit archive ${from} recorded in the database is missing: a restore could not verify the audit chain (put it back in ${archiveDir})`,
        );
      }
      stage(`audit/${name}`, (to) => copyFileSync(from, to));
    }

    // 5. The manifest, then the archive: manifest first, so `tar xOf FILE manifest.json` is quick.
    const order = (name: string) => (name === DATABASE_MEMBER ? 0 : name.startsWith('data/') ? 1 : 2);
    inputs.sort((a, b) => order(a.name) - order(b.name) || a.name.localeCompare(b.name));
    const manifest: Manifest = {
      format: FORMAT,
      version: FORMAT_VERSION,
      created_at: new Date().toISOString(),
      gateway_version: VERSION,
      source: { database: config.database.url, data_dir: config.data_dir, audit_archive_dir: archiveDir },
      migrations,
      counts,
      jwt_secret_file: jwtSecretFile,
      members: inputs.map((i) => ({ name: i.name, ...sha256File(i.path) })),
    };
    const manifestFile = path.join(work, MANIFEST);
    writeFileSync(manifestFile, JSON.stringify(manifest, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
    const size = writeTar(partial, [{ name: MANIFEST, path: manifestFile }, ...inputs], { mode: 0o600 });
    renameSync(partial, dest);
    fsyncDir(destDir);
    return { file: dest, size, manifest, notes };
  } finally {
    rmSync(partial, { force: true });
    rmSync(work, { recursive: true, force: true });
  }
}
