/**
 * The agent side of the gateway (docs/agent-protocol.md). The wire shapes come from
 * schemas/agent-protocol.schema.json; this file adds the runner's own interfaces.
 */
import type {
  AgentEvent,
  AgentLogEvent,
  AgentPhaseEvent,
  AgentProgressEvent,
  AgentResultEvent,
  AgentUsageEvent,
  PureAgentOptions,
  PureAgentRequest,
} from '../../schemas/types.gen.js';

export type {
  AgentEvent,
  AgentLogEvent,
  AgentPhaseEvent,
  AgentProgressEvent,
  AgentResultEvent,
  AgentUsageEvent,
  PureAgentOptions,
  PureAgentRequest,
};

/**
 * Why a run ended.
 * - `exited`: the process ended on its own (any exit code or signal not sent by us);
 * - `timeout`: the wall-clock limit stopped it;
 * - `stopped`: `stop()` was called (budget, cancel, shutdown: the caller knows which);
 * - `spawn_failed`: the command could not be started (missing file, no permission, bad cwd);
 * - `limit`: an `agent.limits` value stopped it (`AgentExit.limit` says which).
 */
export type AgentExitReason = 'exited' | 'timeout' | 'stopped' | 'spawn_failed' | 'limit';

/** The `agent.limits` an agent can be stopped by, as named in its session's end reason (`limit_<name>`). */
export type AgentLimitName = 'memory' | 'workspace' | 'cpu' | 'file_size';

/** How a run ended. `result` is the last valid `result` line, if any; a crash leaves it null. */
export interface AgentExit {
  reason: AgentExitReason;
  exitCode: number | null;
  signal: string | null;
  result: { status: AgentResultEvent['status']; summary: string } | null;
  /** Lines on stdout that were not a valid protocol event (dropped, never delivered). */
  invalidLines: number;
  /** The `why` given to the first `stop()` call (or 'timeout'); null when nobody stopped it. */
  stopReason: string | null;
  /** With reason `limit`: which limit. */
  limit?: AgentLimitName | null;
  /**
   * The last lines the agent wrote to stderr (at most 20 lines / 2 KiB, control
   * characters and secret-looking values removed), or why it could not start;
   * null when there is nothing to show.
   */
  stderrTail?: string | null;
}

/** Callbacks of one run. `onEvent` is awaited: the next event waits until it settles. */
export interface AgentHooks {
  onEvent(e: AgentEvent): void | Promise<void>;
  onInvalidLine?(line: string): void;
}

/** One running agent. */
export interface AgentRun {
  /** Process id (also the process group id); undefined when the spawn failed. */
  pid: number | undefined;
  /**
   * SIGTERM to the process group, SIGKILL after the grace if still alive (`graceMs`,
   * default `agent.kill_grace_seconds`; 0 kills at once, also during a stop already
   * under way). Idempotent; resolves when the process is gone.
   */
  stop(why: string, graceMs?: number): Promise<void>;
  /** Resolves (never rejects) once the process has exited and its stdout is drained and delivered. */
  done: Promise<AgentExit>;
}

/** Starts agents. `ProcessRunner` is the shipped implementation; tests may fake it. */
export interface AgentRunner {
  /** True when runs start inside the operating-system sandbox (docs/SANDBOX.md); decided once, at start-up. */
  readonly sandboxed?: boolean;
  start(sessionId: string, request: PureAgentRequest, hooks: AgentHooks): AgentRun;
}
