import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createPublicKey } from 'node:crypto';
import path from 'node:path';
import type { AuditVerifyResponse } from '../../schemas/types.gen.js';
import type { Database } from '../storage/database.js';
import type { AuditRepository } from '../storage/repos/audit.js';
import {
  CHECKPOINT_FILE,
  SIGNING_KEY_FILE,
  loadOrCreateSigningKey,
  verifyCheckpoints,
  type Checkpoint,
} from './checkpoints.js';
import { verifyChain } from './verify.js';

/** What `POST /v1/admin/audit/verify` answers (schemas/api/AuditVerifyResponse.json), without `success`. */
export type AuditVerificationReport = Omit<AuditVerifyResponse, 'success'>;

/**
 * The administrators' audit verification: the hash chain recomputed (daemon/audit/verify.ts) and
 * checked against this daemon's signed checkpoints, when it has a signing key. The route
 * (daemon/http/routes/admin-audit.ts) only answers it.
 */
export class AuditVerification {
  constructor(private readonly deps: { database: Database; audits: AuditRepository; archiveDir: string }) {}

  async run(): Promise<AuditVerificationReport> {
    const { audits, archiveDir } = this.deps;
    const chain = await verifyChain(this.deps.database, existsSync(archiveDir) ? { archiveDir } : {});
    const checkpoints = await verifyAgainstCheckpoints(audits, archiveDir);
    const cpFailure = checkpoints.failure;
    const firstBad = chain.failure
      ? { seq: chain.failure.seq, id: chain.failure.id, reason: chain.failure.reason, message: chain.failure.message }
      : cpFailure
        ? {
            seq: cpFailure.seq,
            id: await audits.entryIdAt(cpFailure.seq),
            reason: cpFailure.reason,
            message: cpFailure.message,
          }
        : null;
    return {
      ok: chain.ok && checkpoints.ok,
      entries: chain.entries,
      archived_entries: chain.archivedEntries,
      last_seq: chain.lastSeq,
      first_bad: firstBad,
      checkpoints,
    };
  }
}

/**
 * Checks the chain against this daemon's signed checkpoints, when it has a
 * signing key (checkpoints enabled). The key is only read here, never created.
 */
async function verifyAgainstCheckpoints(audits: AuditRepository, dir: string) {
  const keyFile = path.join(dir, SIGNING_KEY_FILE);
  if (!existsSync(keyFile)) return { available: false, ok: true, checked: 0, skipped: 0, failure: null };
  const publicKey = createPublicKey(loadOrCreateSigningKey(keyFile));
  let checkpoints: Checkpoint[] = [];
  try {
    checkpoints = (await readFile(path.join(dir, CHECKPOINT_FILE), 'utf8'))
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Checkpoint);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      const failure = { seq: 0, reason: 'malformed', message: 'the checkpoint file cannot be read' };
      return { available: true, ok: false, checked: 0, skipped: 0, failure };
    }
  }
  const report = await verifyCheckpoints(audits, checkpoints, publicKey, existsSync(dir) ? { archiveDir: dir } : {});
  return {
    available: true,
    ok: report.ok,
    checked: report.checked,
    skipped: report.skipped,
    failure: report.failure
      ? { seq: report.failure.seq, reason: report.failure.reason, message: report.failure.message }
      : null,
  };
}
