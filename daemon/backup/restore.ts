import { createPrivateKey, createPublicKey } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { CHECKPOINT_FILE, SIGNING_KEY_FILE, verifyCheckpoints, type Checkpoint } from '../audit/checkpoints.js';
import { MemoryAuditLogger } from '../audit/types.js';
import { verifyChain } from '../audit/verify.js';
import { SecretBox } from '../auth/secret-box.js';
import { systemClock } from '../clock.js';
import type { ResolvedConfig } from '../config/load.js';
import { CreditLedger } from '../credits/ledger.js';
import { acquireDataDirLock, DataDirLockedError, type DataDirLock } from '../data-dir-lock.js';
import { createLogger } from '../logger.js';
import { databaseFromConfig, type Database } from '../storage/database.js';
import { AuditRepository } from '../storage/repos/audit.js';
import { creditRepositories } from '../storage/repos/credits.js';
import { OperationsReads } from '../storage/repos/operations.js';
import { UserRepository } from '../storage/repos/users.js';
import { MIGRATIONS } from '../storage/migrations/index.js';
import { migrateToLatest, pendingMigrations } from '../storage/migrator.js';
import {
  AUDIT_FILES,
  BackupError,
  DATA_FILES,
  DATABASE_MEMBER,
  FORMAT,
  FORMAT_VERSION,
  fsyncDir,
  integrityProblem,
  MANIFEST,
  placeOf,
  readCounts,
  sha256File,
  sqliteFileOf,
  type Manifest,
  type SnapshotCounts,
} from './snapshot.js';
import { readTar, TarError, type TarMember } from './tar.js';

/** One line of what restore checked: printed as it goes. */
export interface RestoreCheck {
  name: string;
  ok: boolean;
  message: string;
}

export interface RestoreOptions {
  config: ResolvedConfig;
  /** The backup file (`keen-admin backup --to FILE`). */
  file: string;
  /** Replace a database that exists (it is moved aside, not deleted). */
  force?: boolean;
  /** Told each check as soon as it is done, and each file moved. */
  report: (check: RestoreCheck) => void;
  /** Test hook: the time in the names of the files moved aside. */
  now?: () => Date;
}

export interface RestoreResult {
  manifest: Manifest;
  /** Where each replaced file went. */
  movedAside: Array<{ from: string; to: string }>;
  /** Every file written from the backup. */
  restored: string[];
}

/** A check that failed: restore stops, nothing in the data directory has been changed. */
export class RestoreRefused extends BackupError {
  constructor(
    readonly check: string,
    message: string,
  ) {
    super('RESTORE_REFUSED', message);
  }
}

const SIDE_FILES = ['-wal', '-shm'] as const;

const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * Replaces a stopped SQLite daemon's database (and the secrets and audit
 * files it depends on) with a backup, after checking the backup in full:
 *
 * 1. no daemon runs on the data directory (its lock, and an exclusive SQLite
 *    lock on the database: any process that has it open refuses this);
 * 2. the archive unpacks (into a folder inside the data directory), holds
 *    only the members a backup holds, and each matches the manifest's size
 *    and sha256;
 * 3. `PRAGMA integrity_check` and `foreign_key_check`; the row counts match the
 *    manifest; pending migrations are applied to the unpacked copy;
 * 4. the credit ledger's verify, the audit chain's verify (with the archives)
 *    and the signed checkpoints; the TOTP secrets open with the secret the
 *    daemon will use.
 *
 * Only then are the current files moved aside (`<name>.before-restore-<time>`)
 * and the backup's renamed into place, the database last. The data
 * directory's lock is held throughout, so no daemon starts meanwhile.
 */
export async function restoreBackup(options: RestoreOptions): Promise<RestoreResult> {
  const { config, report } = options;
  const dbFile = sqliteFileOf(config, 'restore');
  const source = path.resolve(options.file);
  if (!existsSync(source) || !statSync(source).isFile()) throw new BackupError('NOT_FOUND', `${source} is not a file`);
  const pass = (name: string, message: string) => report({ name, ok: true, message });
  const refuse = (name: string, message: string): never => {
    report({ name, ok: false, message });
    throw new RestoreRefused(name, message);
  };

  // 1. Nothing runs on this data directory, and nothing starts while we work.
  let lock: DataDirLock;
  try {
    lock = acquireDataDirLock(config.data_dir);
  } catch (err) {
    if (err instanceof DataDirLockedError)
      refuse('daemon', `${err.message.replace(/; stop it first.*$/, '')}: stop it before restoring`);
    throw err;
  }
  let work: string | null = null;
  try {
    probeDatabaseUnused(dbFile, refuse);
    const existing = existsSync(dbFile);
    if (existing && !options.force) {
      refuse(
        'daemon',
        `${dbFile} exists; pass --force to replace it (it is kept as ${path.basename(dbFile)}.before-restore-<time>)`,
      );
    }
    pass('daemon', `no process has ${config.data_dir} or ${dbFile} open${existing ? '' : ' (no database there yet)'}`);

    // 2. Unpack into the data directory (same filesystem as the files it replaces: rename, not copy).
    work = mkdtempSync(path.join(config.data_dir, '.restore-'));
    const unpacked = unpack(source, work, refuse);
    pass('archive', `${unpacked.members.length} members unpacked into ${work}`);
    const manifest = checkManifest(unpacked, refuse);
    pass(
      'checksums',
      `${manifest.members.length} members match the manifest's sizes and sha256 (backup of ${manifest.source.database} at ${manifest.created_at})`,
    );

    // 3. The database file on its own.
    const snapshot = unpacked.paths.get(DATABASE_MEMBER)!;
    checkSqlite(snapshot, manifest, refuse, pass);

    // 4. What the daemon would check, on the snapshot.
    await checkContents(config, snapshot, unpacked.paths, manifest, refuse, pass);

    // 5. Put it in place.
    const result = install(config, dbFile, unpacked.paths, options.now?.() ?? new Date());
    return { manifest, ...result };
  } finally {
    if (work) rmSync(work, { recursive: true, force: true });
    lock.release();
  }
}

/**
 * An exclusive lock on the database refuses while any other connection has it
 * open (in WAL mode a daemon holds the shared-memory lock as long as it runs).
 * Covers daemons older than the data directory lock, and keen-admin.
 */
function probeDatabaseUnused(dbFile: string, refuse: (name: string, message: string) => never): void {
  if (!existsSync(dbFile)) return;
  let db: BetterSqlite3.Database | undefined;
  try {
    db = new BetterSqlite3(dbFile, { fileMustExist: true, timeout: 0 });
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
    db.exec('ROLLBACK');
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED')
      refuse('daemon', `${dbFile} is open in another process (a running daemon?): stop it before restoring`);
    refuse(
      'daemon',
      `cannot open the current database ${dbFile}: ${messageOf(err)} (move it away by hand if it is beyond repair)`,
    );
  } finally {
    db?.close();
  }
}

interface Unpacked {
  members: TarMember[];
  /** Member name -> where it was unpacked. */
  paths: Map<string, string>;
  manifest: unknown;
}

function unpack(file: string, work: string, refuse: (name: string, message: string) => never): Unpacked {
  const paths = new Map<string, string>();
  let members: TarMember[];
  try {
    members = readTar(file, (name) => {
      if (name !== MANIFEST && !placeOf(name))
        throw new TarError(`unexpected member ${JSON.stringify(name)}: not part of a keen-gateway backup`);
      if (paths.has(name)) throw new TarError(`member ${JSON.stringify(name)} appears twice`);
      const to = path.join(work, name.replace('/', '__'));
      paths.set(name, to);
      return to;
    });
  } catch (err) {
    return refuse('archive', `${file}: ${messageOf(err).replace(/^tar: /, '')}`);
  }
  const manifestPath = paths.get(MANIFEST);
  if (!manifestPath) refuse('archive', `${file} has no ${MANIFEST}: not a keen-gateway backup`);
  let manifest: unknown;
  try {
    manifest = JSON.parse(readFileSync(manifestPath!, 'utf8'));
  } catch (err) {
    refuse('archive', `${MANIFEST} is not valid JSON: ${messageOf(err)}`);
  }
  return { members, paths, manifest };
}

function checkManifest(unpacked: Unpacked, refuse: (name: string, message: string) => never): Manifest {
  const m = unpacked.manifest as Partial<Manifest> | null;
  if (!m || typeof m !== 'object' || m.format !== FORMAT)
    refuse('checksums', `${MANIFEST} is not a keen-gateway backup manifest`);
  if (m!.version !== FORMAT_VERSION)
    refuse(
      'checksums',
      `${MANIFEST} has format version ${String(m!.version)}; this keen-gateway reads version ${FORMAT_VERSION}`,
    );
  const listed = Array.isArray(m!.members) ? m!.members : refuse('checksums', `${MANIFEST} lists no members`);
  if (!m!.counts || typeof m!.counts !== 'object' || !m!.source || typeof m!.created_at !== 'string')
    refuse('checksums', `${MANIFEST} is incomplete`);
  const inArchive = new Map(unpacked.members.filter((x) => x.name !== MANIFEST).map((x) => [x.name, x]));
  const seen = new Set<string>();
  for (const entry of listed) {
    const name = String(entry?.name);
    if (seen.has(name)) refuse('checksums', `${MANIFEST} lists ${name} twice`);
    seen.add(name);
    const member = inArchive.get(name);
    if (!member) refuse('checksums', `${name} is listed in ${MANIFEST} but missing from the archive`);
    if (member!.size !== entry.size)
      refuse('checksums', `${name}: ${member!.size} bytes, the manifest says ${String(entry.size)}`);
    if (member!.sha256 !== entry.sha256)
      refuse(
        'checksums',
        `${name}: sha256 ${member!.sha256} does not match the manifest's ${String(entry.sha256)} (the file was changed or damaged)`,
      );
  }
  for (const name of inArchive.keys())
    if (!seen.has(name)) refuse('checksums', `${name} is in the archive but not listed in ${MANIFEST}`);
  if (!seen.has(DATABASE_MEMBER)) refuse('checksums', `the backup holds no ${DATABASE_MEMBER}`);
  return m as Manifest;
}

function checkSqlite(
  snapshot: string,
  manifest: Manifest,
  refuse: (name: string, message: string) => never,
  pass: (name: string, message: string) => void,
): void {
  let db: BetterSqlite3.Database | undefined;
  let counts: SnapshotCounts;
  try {
    db = new BetterSqlite3(snapshot, { fileMustExist: true });
    const problem = integrityProblem(db);
    if (problem) refuse('integrity', `PRAGMA integrity_check: ${problem}`);
    pass('integrity', 'PRAGMA integrity_check ok, foreign_key_check ok');
    counts = readCounts(db);
    const known = new Set(Object.keys(MIGRATIONS));
    const unknown = (
      db.prepare("select name from sqlite_master where type = 'table' and name = 'kysely_migration'").get()
        ? (db.prepare('select name from kysely_migration').all() as Array<{ name: string }>)
        : []
    ).filter((r) => !known.has(r.name));
    if (unknown.length > 0)
      refuse(
        'schema',
        `the backup has migrations this keen-gateway does not know (${unknown.map((r) => r.name).join(', ')}): restore it with the version that made it (${manifest.gateway_version}) or later`,
      );
  } catch (err) {
    if (err instanceof RestoreRefused) throw err;
    return refuse('integrity', `${DATABASE_MEMBER} cannot be read as a SQLite database: ${messageOf(err)}`);
  } finally {
    db?.close();
  }
  const differ = (Object.keys(manifest.counts) as Array<keyof SnapshotCounts>).filter(
    (k) => Number(manifest.counts[k]) !== counts[k],
  );
  if (differ.length > 0)
    refuse(
      'counts',
      `the database holds ${differ.map((k) => `${k} ${counts[k]} (manifest: ${String(manifest.counts[k])})`).join(', ')}`,
    );
  pass(
    'counts',
    `${counts.users} users, ${counts.credit_ledger_entries} ledger entries, ${counts.audit_entries} audit entries` +
      `${counts.audit_archived_entries ? ` + ${counts.audit_archived_entries} archived` : ''} (head seq ${counts.audit_head_seq}), as in the manifest`,
  );
}

async function checkContents(
  config: ResolvedConfig,
  snapshot: string,
  paths: Map<string, string>,
  manifest: Manifest,
  refuse: (name: string, message: string) => never,
  pass: (name: string, message: string) => void,
): Promise<void> {
  // The backup's copy of the file, not the configured database.
  const database = databaseFromConfig(config, {
    url: `sqlite:${snapshot}`,
    poolMax: 1,
    connectTimeoutMs: 5000,
    busyTimeoutMs: 5000,
    logger: createLogger('silent'),
  });
  try {
    const pending = await pendingMigrations(database);
    if (pending.length > 0) {
      try {
        await migrateToLatest(database);
      } catch (err) {
        refuse('schema', messageOf(err));
      }
      pass(
        'schema',
        `applied ${pending.length} pending migration(s) to the backup's copy: ${pending.join(', ')} (the daemon would at start)`,
      );
    } else {
      pass('schema', 'up to date');
    }

    const ledger = new CreditLedger({
      database,
      repositories: creditRepositories(database),
      clock: systemClock,
      audit: new MemoryAuditLogger(),
    });
    const mismatches = await ledger.verify();
    if (mismatches.length > 0) {
      const first = mismatches
        .slice(0, 3)
        .map(
          (m) =>
            `user ${m.userId} ${m.check}${m.entryId ? ` at ${m.entryId}` : ''}: expected ${m.expected}, stored ${m.actual} - ${m.message}`,
        );
      refuse('ledger', `${mismatches.length} mismatch(es): ${first.join('; ')}`);
    }
    const accounts = await new OperationsReads(database).countCreditAccounts();
    pass('ledger', `credit ledger consistent (${accounts} accounts)`);

    // The audit files as they will be once restored: the backup's, in a folder of their own.
    const auditDir = path.join(path.dirname(snapshot), 'audit');
    mkdirSync(auditDir, { mode: 0o700 });
    for (const [name, file] of paths)
      if (name.startsWith('audit/')) linkOrCopy(file, path.join(auditDir, name.slice('audit/'.length)));
    const chain = await verifyChain(database, { archiveDir: auditDir });
    if (!chain.ok) {
      const f = chain.failure!;
      refuse('audit', `audit chain broken at seq ${f.seq}${f.id ? ` (${f.id})` : ''}: ${f.reason}: ${f.message}`);
    }
    const keyFile = path.join(auditDir, SIGNING_KEY_FILE);
    const cpFile = path.join(auditDir, CHECKPOINT_FILE);
    let cpText = '';
    if (existsSync(keyFile)) {
      let checkpoints: Checkpoint[] = [];
      try {
        checkpoints = existsSync(cpFile)
          ? readFileSync(cpFile, 'utf8')
              .split('\n')
              .filter((l) => l.trim() !== '')
              .map((l) => JSON.parse(l) as Checkpoint)
          : [];
      } catch {
        refuse('audit', `${CHECKPOINT_FILE} cannot be read`);
      }
      let publicKey;
      try {
        publicKey = createPublicKey(createPrivateKey(readFileSync(keyFile, 'utf8')));
      } catch (err) {
        return refuse('audit', `${SIGNING_KEY_FILE} is not a usable key: ${messageOf(err)}`);
      }
      const audits = new AuditRepository(database);
      const cp = await verifyCheckpoints(audits, checkpoints, publicKey, { archiveDir: auditDir });
      if (!cp.ok)
        refuse('audit', `checkpoint at seq ${cp.failure!.seq}: ${cp.failure!.reason}: ${cp.failure!.message}`);
      cpText =
        checkpoints.length === 0
          ? ', no checkpoints written yet'
          : `, ${cp.checked} signed checkpoints verified${cp.skipped ? ` (${cp.skipped} skipped)` : ''}`;
    } else if (existsSync(cpFile)) {
      refuse(
        'audit',
        `the backup has ${CHECKPOINT_FILE} but not ${SIGNING_KEY_FILE}: the checkpoints cannot be verified`,
      );
    } else {
      cpText = ', no checkpoints in the backup';
    }
    pass(
      'audit',
      `chain intact: ${chain.entries} entries${chain.archivedEntries ? ` + ${chain.archivedEntries} archived` : ''} (last seq ${chain.lastSeq ?? '-'})${cpText}`,
    );

    await checkSecrets(config, database, paths, manifest, refuse, pass);
  } finally {
    await database.close().catch(() => undefined);
  }
  // The daemon's own open would do this too; done here, the file put in place stands alone.
  const db = new BetterSqlite3(snapshot, { fileMustExist: true });
  try {
    db.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
  for (const side of SIDE_FILES) rmSync(snapshot + side, { force: true });
}

/** The TOTP secrets sealed in the backup open with the secret the restored daemon will use. */
async function checkSecrets(
  config: ResolvedConfig,
  database: Database,
  paths: Map<string, string>,
  manifest: Manifest,
  refuse: (name: string, message: string) => never,
  pass: (name: string, message: string) => void,
): Promise<void> {
  const sealed = await new UserRepository(database.db).listSealedMfaSecrets();
  const fromBackup = paths.get('data/jwt-secret');
  const currentFile = path.join(config.data_dir, 'jwt-secret');
  let secret: Buffer | null = null;
  let where: string;
  if (config.jwt_secret !== null) {
    secret = Buffer.from(config.jwt_secret, 'utf8');
    where = 'JWT_SECRET from this environment';
  } else if (fromBackup) {
    secret = Buffer.from(readFileSync(fromBackup, 'utf8').trim(), 'base64url');
    where = "the backup's jwt-secret";
  } else if (existsSync(currentFile)) {
    secret = Buffer.from(readFileSync(currentFile, 'utf8').trim(), 'base64url');
    where = `${currentFile} (the backup holds none: the source daemon took JWT_SECRET from its environment)`;
  } else {
    where = 'no secret (the daemon would generate a new one)';
  }
  const previous = config.jwt_previous_secrets.map((s) => Buffer.from(s, 'utf8'));
  // With JWT_SECRET set here, the backup's generated secret still opens what it sealed when named as a previous secret.
  const box = secret ? new SecretBox(secret, 'totp-secrets', previous) : null;
  const closed = sealed.filter((u) => {
    if (!box) return true;
    try {
      box.open(u.mfa_secret_enc!);
      return false;
    } catch {
      return true;
    }
  });
  if (closed.length > 0) {
    const hint = manifest.jwt_secret_file
      ? config.jwt_secret !== null
        ? "JWT_SECRET is set in this environment and overrides the backup's data/jwt-secret: add that secret to JWT_PREVIOUS_SECRETS, or unset JWT_SECRET"
        : 'the backup holds data/jwt-secret but it does not open them'
      : "run restore with the daemon's environment: the JWT_SECRET (and JWT_PREVIOUS_SECRETS) the source daemon had";
    refuse('secrets', `${closed.length} of ${sealed.length} sealed TOTP secrets do not open with ${where}: ${hint}`);
  }
  pass(
    'secrets',
    sealed.length === 0
      ? `no sealed TOTP secrets; signing secret: ${where}`
      : `all ${sealed.length} sealed TOTP secrets open with ${where}`,
  );
}

function linkOrCopy(from: string, to: string): void {
  try {
    linkSync(from, to);
  } catch {
    copyFileSync(from, to);
  }
}

/** Renames `from` to `to`; across filesystems copies beside `to` first, so `to` still appears at once. */
function moveInto(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    const beside = `${to}.restore-partial`;
    copyFileSync(from, beside);
    renameSync(beside, to);
    rmSync(from, { force: true });
  }
}

function install(
  config: ResolvedConfig,
  dbFile: string,
  paths: Map<string, string>,
  now: Date,
): Omit<RestoreResult, 'manifest'> {
  const stamp = now.toISOString().replace(/[:.]/g, '-');
  const movedAside: RestoreResult['movedAside'] = [];
  const restored: string[] = [];
  const touched = new Set<string>();
  const aside = (file: string, to = `${file}.before-restore-${stamp}`) => {
    if (!existsSync(file)) return;
    renameSync(file, to);
    movedAside.push({ from: file, to });
    touched.add(path.dirname(file));
  };
  const put = (from: string, to: string) => {
    // The same content (the secrets of a restore onto its own data directory) needs no copy aside.
    if (!existsSync(to) || sha256File(to).sha256 !== sha256File(from).sha256) aside(to);
    moveInto(from, to);
    restored.push(to);
    touched.add(path.dirname(to));
  };

  // The files the database depends on. A checkpoint file or key the backup lacks is moved aside
  // too: checkpoints of another chain would fail the audit verify of the restored one.
  mkdirSync(config.data_dir, { recursive: true, mode: 0o700 });
  mkdirSync(config.audit.archive_dir, { recursive: true, mode: 0o700 });
  for (const file of DATA_FILES) {
    const from = paths.get(`data/${file}`);
    if (from) put(from, path.join(config.data_dir, file));
  }
  for (const file of AUDIT_FILES) {
    const from = paths.get(`audit/${file}`);
    const to = path.join(config.audit.archive_dir, file);
    if (from) put(from, to);
    else aside(to);
  }
  for (const [name, from] of paths) {
    const place = placeOf(name);
    if (place?.dir === 'audit' && !(AUDIT_FILES as readonly string[]).includes(place.file))
      put(from, path.join(config.audit.archive_dir, place.file));
  }

  // The database last. Its WAL and shared memory go aside first and keep the name SQLite looks
  // for beside the moved file (keen.db.before-restore-T-wal), so that copy still opens whole.
  mkdirSync(path.dirname(dbFile), { recursive: true, mode: 0o700 });
  const dbAside = `${dbFile}.before-restore-${stamp}`;
  for (const side of SIDE_FILES) aside(dbFile + side, dbAside + side);
  if (existsSync(dbFile)) {
    // A hard link keeps the old file while the new one replaces keen.db in one rename.
    try {
      linkSync(dbFile, dbAside);
      movedAside.push({ from: dbFile, to: dbAside });
    } catch {
      aside(dbFile, dbAside);
    }
  }
  moveInto(paths.get(DATABASE_MEMBER)!, dbFile);
  restored.push(dbFile);
  touched.add(path.dirname(dbFile));
  for (const dir of touched) fsyncDir(dir);
  return { movedAside, restored };
}
