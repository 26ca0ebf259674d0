import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Clock } from '../clock.js';
import type { Logger } from '../logger.js';
import { Periodic } from '../periodic.js';
import type { Database } from '../storage/database.js';
import type { AuditRepository } from '../storage/repos/audit.js';
import { rowToRecord, toJsonLine } from './entry.js';

export interface AuditRetentionOptions {
  /** Opens the transaction that records a cut and deletes its entries. */
  database: Database;
  audits: AuditRepository;
  clock: Clock;
  logger: Logger;
  /** Where archive files are written (created 0700). */
  archiveDir: string;
  /** Entries older than this (by `ts`) are archived and removed from the table. */
  maxAgeMs: number;
  /** Most entries moved by one run; the next run takes the rest. Default 100,000. */
  maxEntriesPerRun?: number;
  /** Rows read per query while writing the file. Default 1000. */
  pageSize?: number;
  /** How often `start()` runs. Default 1 hour. */
  intervalMs?: number;
}

export interface ArchiveResult {
  firstSeq: number;
  lastSeq: number;
  entries: number;
  /** Absolute path of the JSON Lines file. */
  file: string;
  /** Hash of the last archived entry: the prev_hash of the first entry kept. */
  lastHash: string;
}

/** `audit-000000000001-000000000500.jsonl`: file names sort in seq order. */
export function archiveFileName(firstSeq: number, lastSeq: number): string {
  return `audit-${String(firstSeq).padStart(12, '0')}-${String(lastSeq).padStart(12, '0')}.jsonl`;
}

/**
 * Moves old entries out of the table into JSON Lines files, oldest first, one
 * file per run named by its seq range. Only a prefix of the chain is ever cut
 * (entries 1..N, then N+1..M, ...), and each cut is recorded in `audit_archive`
 * with the hash of its last entry, so verify still links the first kept entry;
 * with the files at hand verify can re-check the archived part too.
 */
export class AuditRetention {
  private readonly periodic = new Periodic(() => this.archive());

  constructor(private readonly options: AuditRetentionOptions) {}

  start(): void {
    this.periodic.start(this.options.intervalMs ?? 3_600_000, {
      tick: () =>
        void this.runOnce().catch((err: Error) =>
          this.options.logger.error({ err: { message: err.message } }, 'audit retention failed'),
        ),
    });
  }

  stop(): void {
    this.periodic.cancel();
  }

  /** Archives what is due now; null when nothing is. One run at a time per process. */
  runOnce(): Promise<ArchiveResult | null> {
    return this.periodic.run();
  }

  private async archive(): Promise<ArchiveResult | null> {
    const { database, audits, clock, logger, archiveDir } = this.options;
    const cutoff = clock.now() - this.options.maxAgeMs;
    const maxEntries = this.options.maxEntriesPerRun ?? 100_000;
    const pageSize = this.options.pageSize ?? 1000;

    const bounds = await audits.bounds();
    if (!bounds) return null;
    const firstSeq = bounds.first;
    // Cut a prefix only: up to the entry before the first one that is still young.
    const young = await audits.firstSeqSince(cutoff);
    let lastSeq = young !== null ? young - 1 : bounds.last;
    lastSeq = Math.min(lastSeq, firstSeq + maxEntries - 1);
    if (lastSeq < firstSeq) return null;

    mkdirSync(archiveDir, { recursive: true, mode: 0o700 });
    const name = archiveFileName(firstSeq, lastSeq);
    const finalPath = path.join(archiveDir, name);
    const tmpPath = `${finalPath}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    let entries = 0;
    let lastHash = '';
    const fh = await open(tmpPath, 'wx', 0o600);
    try {
      let after = firstSeq - 1;
      while (after < lastSeq) {
        const rows = await audits.range(after, lastSeq, pageSize);
        if (rows.length === 0) break;
        await fh.write(rows.map((r) => toJsonLine(rowToRecord(r))).join(''));
        entries += rows.length;
        const last = rows[rows.length - 1]!;
        after = Number(last.seq);
        lastHash = last.hash;
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (entries !== lastSeq - firstSeq + 1) {
      await rm(tmpPath, { force: true });
      throw new Error(
        `audit retention: expected ${lastSeq - firstSeq + 1} entries in ${firstSeq}..${lastSeq}, read ${entries} (the chain has a gap; run verify)`,
      );
    }
    // The file is complete on disk before any row is deleted.
    await rename(tmpPath, finalPath);

    try {
      await database.transaction(async (trx) => {
        // Same lock as appends, so two daemons' retention runs (and appends) take turns.
        await audits.lockHeadSeq(trx);
        await audits.insertArchive(trx, {
          first_seq: firstSeq,
          last_seq: lastSeq,
          last_hash: lastHash,
          file: name,
          entries,
          created_at: clock.now(),
        });
        const deleted = await audits.deleteRange(trx, firstSeq, lastSeq);
        if (Number(deleted) !== entries) {
          throw new Error(`audit retention: deleted ${deleted} rows, archived ${entries}`);
        }
      });
    } catch (err) {
      // Another daemon may have archived the same range (same file name, same content): leave its file alone.
      const other = await audits.archiveStartingAt(firstSeq);
      if (!other) await rm(finalPath, { force: true });
      throw err;
    }
    logger.info({ first_seq: firstSeq, last_seq: lastSeq, entries, file: name }, 'audit entries archived');
    return { firstSeq, lastSeq, entries, file: finalPath, lastHash };
  }
}
