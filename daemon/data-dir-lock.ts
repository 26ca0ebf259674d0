import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';

/** Who holds a data directory: written beside the lock by its holder, read by whoever is refused. */
export interface LockHolder {
  pid: number;
  started_at: string;
  hostname: string | null;
}

export class DataDirLockedError extends Error {
  constructor(
    readonly dataDir: string,
    readonly holder: LockHolder | null,
  ) {
    super(
      holder
        ? `another keen-gateway (pid ${holder.pid}${holder.hostname ? ` on ${holder.hostname}` : ''}, started ${holder.started_at}) holds the data directory ${dataDir}; stop it first, or give this daemon its own KEEN_DATA_DIR`
        : `another process holds the data directory ${dataDir}; stop it first, or give this daemon its own KEEN_DATA_DIR`,
    );
    this.name = 'DataDirLockedError';
  }
}

export interface DataDirLock {
  readonly dataDir: string;
  release(): void;
}

const LOCK_FILE = 'daemon.lock';
const HOLDER_FILE = 'daemon.pid';

/**
 * Takes the exclusive lock of a data directory, or throws DataDirLockedError
 * naming the process that holds it. One daemon per data directory: its
 * instance id, its sessions' agents and its SQLite file are its own.
 *
 * The lock is an exclusive SQLite lock on `<data_dir>/daemon.lock` (a POSIX
 * record lock underneath): the kernel drops it when the process dies, kill -9
 * included, so there is no stale lock to clean up, and SQLite also tracks it
 * between connections of one process. `daemon.pid` says who holds it.
 */
export function acquireDataDirLock(dataDir: string, info: { hostname?: string | null } = {}): DataDirLock {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = path.join(dataDir, LOCK_FILE);
  const db = new BetterSqlite3(file, { timeout: 0 });
  try {
    db.pragma('journal_mode = DELETE');
    db.pragma('locking_mode = EXCLUSIVE');
    // The first write takes the EXCLUSIVE lock; locking_mode keeps it until close.
    db.exec('BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS lock (id INTEGER PRIMARY KEY); COMMIT');
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code === 'SQLITE_BUSY' || (err as { code?: string }).code === 'SQLITE_LOCKED') {
      throw new DataDirLockedError(dataDir, readHolder(dataDir));
    }
    throw err;
  }
  const holder: LockHolder = {
    pid: process.pid,
    started_at: new Date().toISOString(),
    hostname: info.hostname ?? null,
  };
  writeFileSync(path.join(dataDir, HOLDER_FILE), JSON.stringify(holder) + '\n', { mode: 0o600 });
  let released = false;
  return {
    dataDir,
    release() {
      if (released) return;
      released = true;
      rmSync(path.join(dataDir, HOLDER_FILE), { force: true });
      db.close();
    },
  };
}

/** Whether a process holds the data directory right now (for tools that must not run beside a daemon). */
export function dataDirHolder(dataDir: string): { locked: boolean; holder: LockHolder | null } {
  try {
    acquireDataDirLock(dataDir).release();
    return { locked: false, holder: null };
  } catch (err) {
    if (err instanceof DataDirLockedError) return { locked: true, holder: err.holder };
    throw err;
  }
}

function readHolder(dataDir: string): LockHolder | null {
  try {
    const parsed = JSON.parse(readFileSync(path.join(dataDir, HOLDER_FILE), 'utf8')) as Partial<LockHolder>;
    if (typeof parsed.pid !== 'number' || typeof parsed.started_at !== 'string') return null;
    return {
      pid: parsed.pid,
      started_at: parsed.started_at,
      hostname: typeof parsed.hostname === 'string' ? parsed.hostname : null,
    };
  } catch {
    return null;
  }
}
