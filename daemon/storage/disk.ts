import { existsSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../logger.js';

/**
 * Error codes that mean "no space left to write", whoever raised them:
 * - SQLITE_FULL: SQLite could not grow the database, its WAL or a temporary
 *   file (ENOSPC, or the connection's max_page_count);
 * - SQLITE_IOERR_SHMSIZE: SQLite could not grow the WAL index (-shm) file,
 *   which on a full file system is the same fault; SQLite maps other ENOSPC
 *   writes to SQLITE_FULL already, so no other SQLITE_IOERR is taken as one;
 * - 53100 (disk_full): Postgres could not extend a file of its data directory;
 * - ENOSPC, EDQUOT: a file the daemon writes itself (a disk quota counts too).
 */
const STORAGE_FULL_CODES = new Set(['SQLITE_FULL', 'SQLITE_IOERR_SHMSIZE', '53100', 'ENOSPC', 'EDQUOT']);

/** True when `err` (or an error in its `cause` chain) means the storage is full. */
export function isStorageFullError(err: unknown): boolean {
  let e: unknown = err;
  for (let depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && STORAGE_FULL_CODES.has(code)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** Free space of one file system, by one of the paths that live on it. */
export interface FreeSpace {
  path: string;
  freeBytes: number;
}

/**
 * Watches the free space of the file systems the daemon writes to (the data
 * directory, the SQLite file, the workspaces). `check()` throws while any of them
 * has less than `minFreeBytes` available to the daemon (`bavail`, what remains
 * once the blocks reserved for root are set aside): readiness then fails, so a
 * load balancer stops sending writes to a daemon about to answer 507. Each
 * crossing of the threshold is logged once, with the paths (never in an answer).
 */
export class DiskSpaceCheck {
  private readonly paths: string[];
  private low = false;

  constructor(
    paths: string[],
    private readonly minFreeBytes: number,
    private readonly logger: Pick<Logger, 'warn' | 'info'>,
  ) {
    this.paths = [...new Set(paths.map((p) => path.resolve(p)))];
  }

  /** The free space of each watched path (a path not created yet counts as its nearest existing parent). */
  async measure(): Promise<FreeSpace[]> {
    return Promise.all(
      this.paths.map(async (p) => {
        const st = await statfs(existingAncestor(p));
        return { path: p, freeBytes: Number(st.bavail) * Number(st.bsize) };
      }),
    );
  }

  async check(): Promise<void> {
    const spaces = await this.measure();
    const short = spaces.filter((s) => s.freeBytes < this.minFreeBytes);
    const mb = (bytes: number) => Math.floor(bytes / (1024 * 1024));
    if (short.length > 0 && !this.low) {
      this.logger.warn(
        { min_free_mb: mb(this.minFreeBytes), low: short.map((s) => ({ path: s.path, free_mb: mb(s.freeBytes) })) },
        'free disk space below server.min_free_disk_mb: not ready until space is freed',
      );
    } else if (short.length === 0 && this.low) {
      this.logger.info({ min_free_mb: mb(this.minFreeBytes) }, 'free disk space is back above server.min_free_disk_mb');
    }
    this.low = short.length > 0;
    if (this.low) throw new Error('free disk space below the threshold');
  }
}

function existingAncestor(p: string): string {
  let at = p;
  while (!existsSync(at)) {
    const up = path.dirname(at);
    if (up === at) break;
    at = up;
  }
  return at;
}
