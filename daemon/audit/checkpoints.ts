import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify as verifySignature,
  type KeyObject,
} from 'node:crypto';
import { Periodic } from '../periodic.js';
import { appendFile, readFile } from 'node:fs/promises';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Clock } from '../clock.js';
import type { Logger } from '../logger.js';
import type { AuditRepository } from '../storage/repos/audit.js';
import { canonicalJson } from './canonical.js';
import { GENESIS_HASH, entryHash } from './entry.js';
import { readJsonLines } from './verify.js';

/**
 * A signed statement "at time ts the chain ended at seq with this hash". Kept
 * outside the database (a JSON Lines file, and the daemon log) and signed with
 * an Ed25519 key that is not in the database either, so whoever can rewrite the
 * database cannot also rewrite the checkpoints: cutting the tail or re-hashing
 * the chain after a change is caught by the next verify against them.
 */
export interface Checkpoint {
  v: 1;
  ts: number;
  seq: number;
  hash: string;
  /** sha256 of the previous checkpoint's signed payload (64 zeros for the first): lines cannot be dropped unseen. */
  prev_checkpoint: string;
  /** First 16 hex digits of sha256 of the public key (SPKI DER). */
  key_id: string;
  /** Ed25519 signature of the canonical JSON of every other field, base64. */
  signature: string;
}

export type CheckpointReason =
  | 'bad signature'
  | 'checkpoint chain'
  | 'truncated tail'
  | 'rewritten chain'
  | 'malformed';

export interface CheckpointFailure {
  /** Index of the checkpoint in the list given. */
  index: number;
  seq: number;
  reason: CheckpointReason;
  message: string;
}

export interface CheckpointReport {
  ok: boolean;
  checked: number;
  /** Checkpoints whose entry has been archived and could not be compared (no archive directory given). */
  skipped: number;
  failure: CheckpointFailure | null;
}

export interface AuditCheckpointerOptions {
  /** The audit tables (built by the composition root). */
  audits: AuditRepository;
  clock: Clock;
  logger: Logger;
  /** Where the key (`audit-signing-key.pem`) and the checkpoints (`audit-checkpoints.jsonl`) live. */
  dataDir: string;
  /** How often `start()` checkpoints the head (skipped when it has not moved). Default 5 minutes. */
  intervalMs?: number;
  /** An Ed25519 private key (KeyObject or PKCS#8 PEM); default: the key file, generated on first use. */
  privateKey?: KeyObject | string;
  /** Override of the checkpoint file path. */
  file?: string;
}

export const SIGNING_KEY_FILE = 'audit-signing-key.pem';
export const CHECKPOINT_FILE = 'audit-checkpoints.jsonl';

/**
 * Loads the Ed25519 signing key from `file`, or generates it there (mode 0600)
 * when the file does not exist. Two daemons starting at once agree on one key:
 * the file is created exclusively and the loser reads the winner's.
 */
export function loadOrCreateSigningKey(file: string): KeyObject {
  try {
    return readKey(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const { privateKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  try {
    writeFileSync(file, pem, { mode: 0o600, flag: 'wx' });
    chmodSync(file, 0o600); // the umask cannot widen it, but be explicit
    return privateKey;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readKey(file);
    throw err;
  }
}

function readKey(file: string): KeyObject {
  const pem = readFileSync(file, 'utf8');
  const key = createPrivateKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`${file} is not an Ed25519 private key`);
  if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
  return key;
}

/** The identifier written in each checkpoint for the key that signed it. */
export function keyId(publicKey: KeyObject): string {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex')
    .slice(0, 16);
}

function payloadOf(cp: Checkpoint): Omit<Checkpoint, 'signature'> {
  const { signature: _s, ...payload } = cp;
  return payload;
}

/** The value the next checkpoint's `prev_checkpoint` must hold. */
export function checkpointHash(cp: Checkpoint): string {
  return createHash('sha256')
    .update(canonicalJson(payloadOf(cp)))
    .digest('hex');
}

/** Writes signed checkpoints of the chain head on a timer, and verifies the chain against them. */
export class AuditCheckpointer {
  readonly publicKey: KeyObject;
  readonly file: string;
  private readonly privateKey: KeyObject;
  private readonly intervalMs: number;
  private readonly periodic = new Periodic(() => this.checkpointIfMoved());
  private last: Checkpoint | null | undefined = undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: AuditCheckpointerOptions) {
    this.privateKey =
      options.privateKey === undefined
        ? loadOrCreateSigningKey(path.join(options.dataDir, SIGNING_KEY_FILE))
        : typeof options.privateKey === 'string'
          ? createPrivateKey(options.privateKey)
          : options.privateKey;
    if (this.privateKey.asymmetricKeyType !== 'ed25519') throw new Error('the audit signing key must be Ed25519');
    this.publicKey = createPublicKey(this.privateKey);
    this.file = options.file ?? path.join(options.dataDir, CHECKPOINT_FILE);
    this.intervalMs = options.intervalMs ?? 5 * 60_000;
  }

  /** Checkpoints the head every interval (when it moved). The timer does not keep the process alive. */
  start(): void {
    this.periodic.start(this.intervalMs, {
      tick: () =>
        void this.periodic
          .run()
          .catch((err: Error) =>
            this.options.logger.error({ err: { message: err.message } }, 'audit checkpoint failed'),
          ),
    });
  }

  /** Ends the timer and waits for a checkpoint in flight. */
  stop(): Promise<void> {
    return this.periodic.stop();
  }

  /** Signs the current head and appends the checkpoint to the file and the log. */
  checkpointNow(): Promise<Checkpoint> {
    return this.enqueue(() => this.write());
  }

  /** Every checkpoint in the file, oldest first (an empty list when there is no file). */
  async readCheckpoints(): Promise<Checkpoint[]> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    return text
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Checkpoint);
  }

  /** Verifies the chain against `checkpoints` (default: this daemon's file) with this daemon's public key. */
  async verify(checkpoints?: Checkpoint[], options: { archiveDir?: string } = {}): Promise<CheckpointReport> {
    const list = checkpoints ?? (await this.readCheckpoints());
    return verifyCheckpoints(this.options.audits, list, this.publicKey, options);
  }

  /** One write at a time, in call order: each checkpoint links to the one before it. */
  private enqueue<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private checkpointIfMoved(): Promise<void> {
    return this.enqueue(async () => {
      const last = await this.lastCheckpoint();
      const head = await this.options.audits.head();
      if (last && last.seq === head.seq && last.hash === head.hash) return;
      await this.write();
    });
  }

  private async lastCheckpoint(): Promise<Checkpoint | null> {
    if (this.last === undefined) {
      const all = await this.readCheckpoints();
      this.last = all[all.length - 1] ?? null;
    }
    return this.last;
  }

  private async write(): Promise<Checkpoint> {
    const last = await this.lastCheckpoint();
    const head = await this.options.audits.head();
    const payload: Omit<Checkpoint, 'signature'> = {
      v: 1,
      ts: this.options.clock.now(),
      seq: head.seq,
      hash: head.hash,
      prev_checkpoint: last ? checkpointHash(last) : GENESIS_HASH,
      key_id: keyId(this.publicKey),
    };
    const signature = sign(null, Buffer.from(canonicalJson(payload), 'utf8'), this.privateKey).toString('base64');
    const cp: Checkpoint = { ...payload, signature };
    mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    await appendFile(this.file, `${JSON.stringify(cp)}\n`, { encoding: 'utf8', mode: 0o600 });
    this.last = cp;
    this.options.logger.info({ audit_checkpoint: cp }, 'audit checkpoint');
    return cp;
  }
}

/**
 * Checks each checkpoint's signature and its link to the one before, and that
 * the chain still holds an entry with the checkpoint's seq and hash. Names the
 * first checkpoint that fails: `truncated tail` when its entry is gone,
 * `rewritten chain` when the entry is there with another hash.
 */
export async function verifyCheckpoints(
  audits: AuditRepository,
  checkpoints: Checkpoint[],
  publicKey: KeyObject,
  options: { archiveDir?: string } = {},
): Promise<CheckpointReport> {
  const report: CheckpointReport = { ok: true, checked: 0, skipped: 0, failure: null };
  const fail = (index: number, seq: number, reason: CheckpointReason, message: string): CheckpointReport => ({
    ...report,
    ok: false,
    failure: { index, seq, reason, message },
  });
  const archives = await audits.archives();
  const head = await audits.head();
  let prev: Checkpoint | null = null;

  for (const [index, cp] of checkpoints.entries()) {
    if (
      !cp ||
      cp.v !== 1 ||
      !Number.isSafeInteger(cp.seq) ||
      typeof cp.hash !== 'string' ||
      typeof cp.signature !== 'string'
    ) {
      return fail(index, Number(cp?.seq ?? -1), 'malformed', `checkpoint ${index} is malformed`);
    }
    let signed = false;
    try {
      signed = verifySignature(
        null,
        Buffer.from(canonicalJson(payloadOf(cp)), 'utf8'),
        publicKey,
        Buffer.from(cp.signature, 'base64'),
      );
    } catch {
      signed = false;
    }
    if (!signed)
      return fail(
        index,
        cp.seq,
        'bad signature',
        `checkpoint at seq ${cp.seq}: signature does not verify with this key`,
      );
    const expectedPrev = prev ? checkpointHash(prev) : GENESIS_HASH;
    if (cp.prev_checkpoint !== expectedPrev) {
      return fail(
        index,
        cp.seq,
        'checkpoint chain',
        `checkpoint at seq ${cp.seq} does not follow the checkpoint before it (a checkpoint was removed?)`,
      );
    }
    prev = cp;

    if (cp.seq === 0) {
      if (cp.hash !== GENESIS_HASH)
        return fail(index, 0, 'rewritten chain', 'checkpoint at seq 0 does not hold the genesis hash');
      report.checked++;
      continue;
    }
    const row = await audits.entryAt(cp.seq);
    if (row) {
      if (row.hash !== cp.hash) {
        return fail(
          index,
          cp.seq,
          'rewritten chain',
          `entry ${cp.seq} (${row.id}) no longer has the hash the checkpoint signed (the chain was rewritten)`,
        );
      }
      report.checked++;
      continue;
    }
    const archive = archives.find((a) => Number(a.first_seq) <= cp.seq && cp.seq <= Number(a.last_seq));
    if (archive) {
      if (Number(archive.last_seq) === cp.seq) {
        if (archive.last_hash !== cp.hash)
          return fail(
            index,
            cp.seq,
            'rewritten chain',
            `archived entry ${cp.seq} does not have the hash the checkpoint signed`,
          );
        report.checked++;
      } else if (options.archiveDir) {
        const found = await findArchived(path.join(options.archiveDir, path.basename(archive.file)), cp.seq);
        if (!found || found !== cp.hash)
          return fail(
            index,
            cp.seq,
            'rewritten chain',
            `archived entry ${cp.seq} does not have the hash the checkpoint signed`,
          );
        report.checked++;
      } else {
        report.skipped++;
      }
      continue;
    }
    return fail(
      index,
      cp.seq,
      'truncated tail',
      `entry ${cp.seq} signed at ${new Date(cp.ts).toISOString()} is missing: the log ends at seq ${head.seq} (tail truncated or entries deleted)`,
    );
  }
  return report;
}

async function findArchived(file: string, seq: number): Promise<string | null> {
  try {
    for await (const e of readJsonLines(file)) {
      if (e.seq === seq) return entryHash(e) === e.hash ? e.hash : null;
    }
  } catch {
    return null;
  }
  return null;
}
