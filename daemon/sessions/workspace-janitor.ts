import { Periodic } from '../periodic.js';
import type { WorkspaceManager } from '../agents/workspaces.js';
import type { Logger } from '../logger.js';
import { EVERYTHING } from '../policies/index.js';
import type { SessionRepository } from '../storage/repos/sessions.js';

/**
 * Removes workspaces of sessions that ended more than `workspaces.retention_days`
 * ago (never a running session's), once an hour.
 */
export class WorkspaceJanitor {
  private readonly periodic = new Periodic(() => this.sweep());
  private readonly sessions: SessionRepository;

  constructor(
    private readonly deps: {
      workspaces: WorkspaceManager;
      sessions: SessionRepository;
      logger: Logger;
      intervalMs?: number;
    },
  ) {
    this.sessions = deps.sessions;
  }

  /** One pass now (shares a pass in flight): the workspaces removed. */
  runOnce(): Promise<string[]> {
    return this.periodic.run();
  }

  private async sweep(): Promise<string[]> {
    const removed = await this.deps.workspaces.sweep(async (sessionId, cutoffMs) => {
      const row = await this.sessions.find(sessionId, EVERYTHING);
      // A workspace whose session is unknown (a failed insert, another installation) is left alone.
      return row !== undefined && row.status !== 'running' && row.ended_at !== null && row.ended_at < cutoffMs;
    });
    if (removed.length > 0) this.deps.logger.info({ removed: removed.length }, 'removed old session workspaces');
    return removed;
  }

  start(): void {
    this.periodic.start(this.deps.intervalMs ?? 3_600_000, {
      tick: () =>
        void this.periodic
          .run()
          .catch((err: Error) => this.deps.logger.warn({ err: { message: err.message } }, 'workspace cleanup failed')),
    });
  }

  /** Ends the timer and waits for a pass in flight. */
  stop(): Promise<void> {
    return this.periodic.stop();
  }
}
