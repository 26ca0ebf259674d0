/**
 * Session workspaces: `<root>/<sessionId>`, one private directory per run.
 *
 * The path holds only the random session id (no user, email, tenant or tier).
 * The id is checked against a strict pattern before it touches the file system,
 * and every result is verified to be a real directory directly inside the real
 * root, so neither `..` nor a planted symlink can point a workspace elsewhere.
 */
import { existsSync, realpathSync } from 'node:fs';
import { lstat, mkdir, readdir, realpath, rm, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Clock } from '../clock.js';
import type { Logger } from '../logger.js';

/** Session ids as `newId('ses')` makes them. Nothing else becomes a path segment. */
export const SESSION_ID_RE = /^ses_[0-9a-z]{26}$/;

const DAY_MS = 86_400_000;

export interface WorkspaceManagerOptions {
  /** `workspaces.root` (absolute). */
  root: string;
  /** `workspaces.retention_days`; 0 keeps workspaces forever. */
  retentionDays: number;
  clock: Clock;
  logger: Logger;
}

/** Refused session id or a workspace that is not what it should be. */
export class WorkspaceError extends Error {
  override readonly name = 'WorkspaceError';
}

export class WorkspaceManager {
  /** The root with symlinks resolved once, here; every workspace path is built on it. */
  readonly root: string;
  private readonly configuredRoot: string;

  constructor(private readonly opts: WorkspaceManagerOptions) {
    this.configuredRoot = path.resolve(opts.root);
    this.root = resolveExisting(this.configuredRoot);
  }

  /** The workspace path of a session (whether or not it exists). Throws on a malformed id. */
  pathFor(sessionId: string): string {
    assertSessionId(sessionId);
    return path.join(this.root, sessionId);
  }

  /**
   * Creates the workspace (mode 0700) and returns its absolute path. Fails when
   * the id is malformed or the directory (or anything else) already exists there.
   */
  async create(sessionId: string): Promise<string> {
    const dir = this.pathFor(sessionId);
    await this.ensureRoot();
    // Not recursive: the leaf must be new, and mkdir does not follow a symlink planted at its name.
    await mkdir(dir, { mode: 0o700 });
    await this.verify(dir);
    return dir;
  }

  /** Removes a session's workspace and everything in it. False when there was none. */
  async remove(sessionId: string): Promise<boolean> {
    const dir = this.pathFor(sessionId);
    let st;
    try {
      st = await lstat(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    if (st.isSymbolicLink() || !st.isDirectory()) {
      // Never follow it: remove the entry itself, not what it points to.
      this.opts.logger.warn({ session_id: sessionId }, 'workspace entry is not a directory; removing the entry only');
      await unlink(dir);
      return true;
    }
    await this.verify(dir);
    // rm does not follow symlinks found inside; it deletes the links themselves.
    await rm(dir, { recursive: true, force: true });
    return true;
  }

  /**
   * Removes workspaces untouched for `retentionDays` whose session `isFinished`
   * says is over (it gets the id and the cutoff time in ms). Entries that are not
   * session workspaces are left alone. Returns the removed session ids.
   */
  async sweep(isFinished: (sessionId: string, cutoffMs: number) => Promise<boolean>): Promise<string[]> {
    const { retentionDays, logger } = this.opts;
    if (retentionDays <= 0 || !existsSync(this.root)) return [];
    const cutoff = this.opts.clock.now() - retentionDays * DAY_MS;
    const removed: string[] = [];
    for (const entry of await readdir(this.root, { withFileTypes: true })) {
      if (!SESSION_ID_RE.test(entry.name) || !entry.isDirectory()) continue;
      try {
        const st = await lstat(path.join(this.root, entry.name));
        if (st.mtimeMs >= cutoff) continue;
        if (!(await isFinished(entry.name, cutoff))) continue;
        if (await this.remove(entry.name)) removed.push(entry.name);
      } catch (err) {
        logger.warn({ session_id: entry.name, err: (err as Error).message }, 'workspace sweep skipped an entry');
      }
    }
    if (removed.length > 0) logger.info({ removed: removed.length }, 'old workspaces removed');
    return removed;
  }

  /** Creates the root (0700) when missing and checks it still resolves to where it did at construction. */
  private async ensureRoot(): Promise<void> {
    await mkdir(this.configuredRoot, { recursive: true, mode: 0o700 });
    const real = await realpath(this.configuredRoot);
    if (real !== this.root) throw new WorkspaceError('workspaces root moved since the gateway started');
  }

  /** A real directory (no symlink at the leaf), whose real path sits directly inside the real root. */
  private async verify(dir: string): Promise<void> {
    const st = await lstat(dir);
    if (st.isSymbolicLink() || !st.isDirectory()) throw new WorkspaceError('workspace is not a directory');
    const real = await realpath(dir);
    if (real !== dir || path.dirname(real) !== this.root) throw new WorkspaceError('workspace is outside the root');
  }
}

function assertSessionId(sessionId: string): void {
  if (typeof sessionId !== 'string' || !SESSION_ID_RE.test(sessionId)) throw new WorkspaceError('invalid session id');
}

/** realpath of the longest existing ancestor, plus the part that does not exist yet. */
function resolveExisting(p: string): string {
  const rest: string[] = [];
  let cur = p;
  for (;;) {
    try {
      return path.join(realpathSync(cur), ...rest.reverse());
    } catch {
      const parent = path.dirname(cur);
      if (parent === cur) return p;
      rest.push(path.basename(cur));
      cur = parent;
    }
  }
}
