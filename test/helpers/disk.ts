import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { IN_CI } from './env.js';

/** A real tmpfs of `sizeMb` (needs root; CI runs as root). */
export function mountTmpfs(sizeMb: number): { dir: string; unmount(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'keen-tmpfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMb}m,mode=0700`, 'tmpfs', dir], { stdio: 'pipe' });
  return {
    dir,
    unmount() {
      try {
        execFileSync('umount', [dir], { stdio: 'pipe' });
      } catch {
        execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const canMount = process.getuid?.() === 0;
/** Suites that need to mount a file system: run as root; otherwise skipped, loudly failing under CI. */
export const describeRoot = canMount ? describe : IN_CI ? describe : describe.skip;

/** Writes zeros into `file` until only `leaveBytes` are free on its file system (0: until ENOSPC). */
export function fill(file: string, leaveBytes: number): void {
  const fd = openSync(file, 'a');
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (;;) {
      const st = statfsSync(path.dirname(file));
      const free = st.bavail * st.bsize;
      if (leaveBytes > 0 && free - chunk.length < leaveBytes) break;
      try {
        writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
        throw err;
      }
    }
  } finally {
    closeSync(fd);
  }
}
