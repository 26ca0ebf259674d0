import { createReadStream } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Database } from '../storage/database.js';
import { GENESIS_HASH, entryHash, rowToRecord, type AuditRecord } from './entry.js';

/**
 * Why an entry breaks the chain:
 * - `hash mismatch`: the entry's content no longer hashes to its stored hash (it was changed);
 * - `prev_hash mismatch`: it does not point at the entry before it (that one was changed and re-hashed, or replaced);
 * - `gap in seq`: entries before it are missing (deleted);
 * - `order`: it holds the content of another position (entries swapped or moved);
 * - `truncated tail`: the chain head says more entries were written than the table holds;
 * - `head mismatch`: the chain head does not name the last entry;
 * - `archive mismatch`: an archive file or the record of a retention cut does not fit the chain.
 */
export type VerifyReason =
  | 'hash mismatch'
  | 'prev_hash mismatch'
  | 'gap in seq'
  | 'order'
  | 'truncated tail'
  | 'head mismatch'
  | 'archive mismatch';

export interface VerifyFailure {
  /** The first entry that does not match (for `gap in seq`: the entry after the gap). */
  seq: number;
  id: string | null;
  reason: VerifyReason;
  message: string;
}

export interface VerifyReport {
  ok: boolean;
  /** Entries checked in the table. */
  entries: number;
  /** Entries checked in archive files (0 unless `archiveDir` was given). */
  archivedEntries: number;
  firstSeq: number | null;
  lastSeq: number | null;
  /** Hash of the last entry checked (64 zeros when none). */
  lastHash: string;
  failure: VerifyFailure | null;
}

export interface VerifyOptions {
  /** Also read the retention archive files from this directory and check them from the genesis entry. */
  archiveDir?: string;
  /** Rows read per query; memory stays bounded by it. Default 1000. */
  pageSize?: number;
}

/** How far from its own seq an entry's content is looked for, to tell `order` from `hash mismatch`. */
const ORDER_WINDOW = 64;

/**
 * Checks one entry against the position it should hold. Pure: used for the
 * table, archive files and exported JSON Lines alike.
 */
export function checkEntry(entry: AuditRecord, expectedSeq: number, expectedPrevHash: string): VerifyFailure | null {
  const at = { seq: entry.seq, id: entry.id };
  if (entry.seq > expectedSeq) {
    const missing =
      entry.seq - 1 === expectedSeq ? `entry ${expectedSeq} is` : `entries ${expectedSeq}..${entry.seq - 1} are`;
    return { ...at, reason: 'gap in seq', message: `${missing} missing before seq ${entry.seq} (deleted?)` };
  }
  if (entry.seq < expectedSeq) {
    return { ...at, reason: 'order', message: `seq ${entry.seq} appears where seq ${expectedSeq} was expected` };
  }
  if (entryHash(entry) !== entry.hash) {
    for (let d = 1; d <= ORDER_WINDOW; d++) {
      for (const other of [entry.seq + d, entry.seq - d]) {
        if (other >= 1 && entryHash({ ...entry, seq: other }) === entry.hash) {
          return {
            ...at,
            reason: 'order',
            message: `seq ${entry.seq} holds the entry written as seq ${other} (entries swapped or moved)`,
          };
        }
      }
    }
    return {
      ...at,
      reason: 'hash mismatch',
      message: `seq ${entry.seq}: content does not match its hash (entry changed)`,
    };
  }
  if (entry.prev_hash !== expectedPrevHash) {
    return {
      ...at,
      reason: 'prev_hash mismatch',
      message: `seq ${entry.seq}: prev_hash does not match the hash of entry ${entry.seq - 1} (an earlier entry was changed and re-hashed, or replaced)`,
    };
  }
  return null;
}

/**
 * Walks the whole chain in seq order and reports the first entry that does not
 * match. Reads in pages, so it runs in bounded memory on any size of log.
 * Entries appended while it runs (after the head it read first) are not checked.
 */
export async function verifyChain(database: Database, options: VerifyOptions = {}): Promise<VerifyReport> {
  const db = database.db;
  const pageSize = options.pageSize ?? 1000;
  const headRow = await db
    .selectFrom('audit_head')
    .select(['seq', 'hash'])
    .where('id', '=', 'chain')
    .executeTakeFirstOrThrow();
  const head = { seq: Number(headRow.seq), hash: headRow.hash };
  const archives = await db.selectFrom('audit_archive').selectAll().orderBy('first_seq', 'asc').execute();

  const report: VerifyReport = {
    ok: true,
    entries: 0,
    archivedEntries: 0,
    firstSeq: null,
    lastSeq: null,
    lastHash: GENESIS_HASH,
    failure: null,
  };
  const fail = (failure: VerifyFailure): VerifyReport => ({ ...report, ok: false, failure });

  let expectedSeq = 1;
  let expectedPrev = GENESIS_HASH;

  // The part moved out by retention: either re-read from the files, or trusted from the cut records.
  for (const a of archives) {
    const first = Number(a.first_seq);
    const last = Number(a.last_seq);
    if (first !== expectedSeq) {
      return fail({
        seq: expectedSeq,
        id: null,
        reason: 'archive mismatch',
        message: `archive ${a.file} starts at seq ${first}, expected ${expectedSeq}`,
      });
    }
    if (options.archiveDir) {
      const file = path.join(options.archiveDir, path.basename(a.file));
      try {
        for await (const entry of readJsonLines(file)) {
          const failure = checkEntry(entry, expectedSeq, expectedPrev);
          if (failure) return fail({ ...failure, message: `${failure.message} [archive ${a.file}]` });
          report.archivedEntries++;
          report.firstSeq ??= entry.seq;
          expectedSeq = entry.seq + 1;
          expectedPrev = entry.hash;
        }
      } catch (err) {
        return fail({
          seq: expectedSeq,
          id: null,
          reason: 'archive mismatch',
          message: `archive ${a.file} cannot be read: ${(err as Error).message}`,
        });
      }
      if (expectedSeq !== last + 1 || expectedPrev !== a.last_hash) {
        return fail({
          seq: expectedSeq - 1,
          id: null,
          reason: 'archive mismatch',
          message: `archive ${a.file} does not end at seq ${last} with the recorded hash`,
        });
      }
    }
    expectedSeq = last + 1;
    expectedPrev = a.last_hash;
  }

  let after = expectedSeq - 1;
  for (;;) {
    const rows = await db
      .selectFrom('audit_log')
      .selectAll()
      .where('seq', '>', after)
      .where('seq', '<=', head.seq)
      .orderBy('seq', 'asc')
      .limit(pageSize)
      .execute();
    for (const row of rows) {
      const entry = rowToRecord(row);
      const failure = checkEntry(entry, expectedSeq, expectedPrev);
      if (failure) return fail(failure);
      report.entries++;
      report.firstSeq ??= entry.seq;
      report.lastSeq = entry.seq;
      report.lastHash = entry.hash;
      expectedSeq = entry.seq + 1;
      expectedPrev = entry.hash;
    }
    if (rows.length < pageSize) break;
    after = Number(rows[rows.length - 1]!.seq);
  }

  if (expectedSeq - 1 < head.seq) {
    return fail({
      seq: expectedSeq,
      id: null,
      reason: 'truncated tail',
      message: `the chain head is at seq ${head.seq} but the log ends at seq ${expectedSeq - 1} (entries deleted from the end)`,
    });
  }
  if (expectedPrev !== head.hash) {
    return fail({
      seq: head.seq,
      id: null,
      reason: 'head mismatch',
      message: `the chain head's hash does not match entry ${head.seq}`,
    });
  }
  if (report.lastSeq === null && expectedSeq > 1) report.lastHash = expectedPrev;
  return report;
}

/** Reads audit entries from a JSON Lines file (an archive or an export), one at a time. */
export async function* readJsonLines(file: string): AsyncGenerator<AuditRecord> {
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    yield JSON.parse(line) as AuditRecord;
  }
}

/**
 * Verifies a sequence of entries on its own (an export or one archive file):
 * the links between consecutive entries and each hash. The first entry is
 * trusted as the starting point unless `from` is given.
 */
export async function verifyEntries(
  entries: AsyncIterable<AuditRecord> | Iterable<AuditRecord>,
  from?: { seq: number; prevHash: string },
): Promise<{ ok: boolean; entries: number; failure: VerifyFailure | null }> {
  let expectedSeq = from?.seq ?? null;
  let expectedPrev = from?.prevHash ?? null;
  let count = 0;
  for await (const entry of entries) {
    const failure = checkEntry(entry, expectedSeq ?? entry.seq, expectedPrev ?? entry.prev_hash);
    if (failure) return { ok: false, entries: count, failure };
    count++;
    expectedSeq = entry.seq + 1;
    expectedPrev = entry.hash;
  }
  return { ok: true, entries: count, failure: null };
}
