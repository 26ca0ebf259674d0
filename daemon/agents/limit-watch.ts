/**
 * The limits a kernel rlimit cannot express, checked while an agent runs: the
 * memory of all its processes together (RLIMIT_DATA bounds each one alone) and
 * the size of its workspace. Sampled from /proc and the file system; the first
 * limit found exceeded is reported once and the watch stops.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import path from 'node:path';

/** The limits this watch checks, named as in `agent.limits`. */
export type WatchedLimit = 'memory' | 'workspace';

export interface LimitWatchOptions {
  /** The process at the top of the agent's tree (bwrap, or the agent itself). */
  pid: number;
  workspace: string;
  memoryBytes: number;
  workspaceBytes: number;
  /** Shortest time between two samples. Default 500 ms. */
  intervalMs?: number;
  onExceeded(limit: WatchedLimit, used: number): void;
}

/** Entries walked per workspace sample at most: a pathological tree cannot stall the daemon. */
const MAX_ENTRIES = 200_000;

export class LimitWatch {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private walking = false;

  constructor(private readonly opts: LimitWatchOptions) {}

  start(): void {
    this.schedule(this.opts.intervalMs ?? 500);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.sample(), ms);
    this.timer.unref();
  }

  /** One sample of both limits. The next one waits at least five times as long as this walk took. */
  async sample(): Promise<void> {
    if (this.walking || this.stopped) return;
    this.walking = true;
    const started = performance.now();
    try {
      const memory = treeMemoryBytes(this.opts.pid);
      if (memory > this.opts.memoryBytes) return this.exceeded('memory', memory);
      const size = await directoryBytes(this.opts.workspace);
      if (size > this.opts.workspaceBytes) return this.exceeded('workspace', size);
    } finally {
      this.walking = false;
    }
    const took = performance.now() - started;
    this.schedule(Math.max(this.opts.intervalMs ?? 500, took * 5));
  }

  private exceeded(limit: WatchedLimit, used: number): void {
    if (this.stopped) return;
    this.stop();
    this.opts.onExceeded(limit, used);
  }
}

/** The direct children of `pid`, from /proc/<pid>/task/<tid>/children (any thread may have forked them). */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out; // gone
  }
  for (const tid of tasks) {
    try {
      for (const child of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ')) {
        if (child) out.push(Number(child));
      }
    } catch {
      // the task ended meanwhile
    }
  }
  return out;
}

/** Every process below `pid` (included). */
export function processTree(pid: number): number[] {
  const out: number[] = [];
  const todo = [pid];
  while (todo.length > 0 && out.length < 100_000) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...childrenOf(p));
  }
  return out;
}

/** Resident memory of a process tree, in bytes (VmRSS of each process). */
export function treeMemoryBytes(pid: number): number {
  let total = 0;
  for (const p of processTree(pid)) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m) total += Number(m[1]) * 1024;
    } catch {
      // gone
    }
  }
  return total;
}

/** Disk space used below `dir` (allocated blocks), without following symlinks. */
export async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  let entries = 0;
  const todo = [dir];
  while (todo.length > 0 && entries < MAX_ENTRIES) {
    const d = todo.pop()!;
    let names: string[];
    try {
      names = await readdir(d);
    } catch {
      continue;
    }
    for (const name of names) {
      entries += 1;
      const p = path.join(d, name);
      try {
        const st = await lstat(p);
        total += st.blocks * 512;
        if (st.isDirectory()) todo.push(p);
      } catch {
        // removed meanwhile
      }
    }
  }
  return total;
}
