/**
 * The README, end to end: the shell blocks a newcomer runs in order (set-up,
 * the daemon, keen-admin init, a user and keys, an agent run, its cancel...),
 * each marked `<!-- runnable -->` on the line before its fence (invisible on
 * GitHub), run as written with bash in a copy of this working tree.
 *
 * How, and why:
 * - The copy holds the working tree's files, committed or not (`git ls-files
 *   --cached --others --exclude-standard`; `git clone` would take committed
 *   files only), without node_modules, dist, data and coverage.
 * - node_modules is a symlink to this checkout's: `npm ci` takes minutes. So
 *   `npm ci` in a block is a shell function that says so and does nothing, and
 *   dist/ is copied from this checkout (built by `npm run build`, which every
 *   e2e test needs first). Copied, not linked: the daemon finds its package
 *   root (schemas, the example agent) from its own path.
 * - The daemon gets a free port: KEEN_PORT is exported (the daemon and
 *   keen-admin read it), and `localhost:8080` / `127.0.0.1:8080` in the blocks'
 *   curl commands become that port: the only change made to the text.
 * - One bash runs every block in order (`set -eo pipefail`, aliases expanded),
 *   so variables and aliases carry over as in a terminal; a HOME of its own and
 *   no KEEN_* of the developer's. A block fails when a command fails, when it
 *   prints an error envelope (`"success":false`) or when it runs longer than
 *   BLOCK_TIMEOUT_MS; the failure names the block and shows its output.
 * - What the blocks start in the background (the daemon) is stopped with the
 *   process group at the end: SIGTERM, then SIGKILL.
 */
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../../daemon/paths.js';
import { freePort } from '../helpers/ports.js';

const BLOCK_TIMEOUT_MS = 90_000;
const MARKER = '<!-- runnable -->';
/** Not copied: installed, built or written at run time. */
const EXCLUDED = ['node_modules', 'dist', 'data', 'coverage', '.git', '.nyc_output'];

export interface RunnableBlock {
  /** 1, 2, ... in README order. */
  index: number;
  /** The line of the opening fence (1-based). */
  line: number;
  /** The section it is in. */
  heading: string;
  code: string;
}

/** The blocks marked runnable, in order; a marker not followed by a sh/bash fence is an error. */
export function runnableBlocks(markdown: string): RunnableBlock[] {
  const lines = markdown.split('\n');
  const blocks: RunnableBlock[] = [];
  let heading = '';
  let fence: string | null = null;
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (fence) {
      if (l.startsWith(fence)) fence = null;
      continue;
    }
    const open = /^(```+|~~~+)/.exec(l);
    if (open) {
      fence = open[1]!;
      continue;
    }
    if (/^#{1,6} /.test(l)) heading = l.replace(/^#+ /, '');
    if (l.trim() !== MARKER) continue;
    const next = lines[i + 1] ?? '';
    const m = /^(```+)(sh|bash|shell)\s*$/.exec(next);
    if (!m)
      throw new Error(
        `README.md:${i + 1}: ${MARKER} must be followed by a \`\`\`sh fence, found ${JSON.stringify(next)}`,
      );
    const body: string[] = [];
    let j = i + 2;
    for (; j < lines.length && !lines[j]!.startsWith(m[1]!); j++) body.push(lines[j]!);
    if (j >= lines.length) throw new Error(`README.md:${i + 2}: the runnable block is not closed`);
    blocks.push({ index: blocks.length + 1, line: i + 2, heading, code: body.join('\n') });
    i = j;
  }
  return blocks;
}

/** A block's code for the test daemon: the README's port 8080 becomes `port`. */
export function onPort(code: string, port: number): string {
  return code.replace(/\b(localhost|127\.0\.0\.1):8080\b/g, `$1:${port}`);
}

/** The working tree's files (tracked and untracked, not ignored), relative to the root. */
function workingTreeFiles(root: string): string[] {
  const excluded = (rel: string) => EXCLUDED.some((e) => rel === e || rel.startsWith(`${e}/`));
  const git = existsSync(path.join(root, '.git'))
    ? spawnSync('git', ['-C', root, 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
        encoding: 'utf8',
      })
    : null;
  if (git && git.status === 0)
    return git.stdout.split('\0').filter((f) => f && !excluded(f) && existsSync(path.join(root, f)));
  // Not a git checkout (an unpacked tarball): everything but what is built or installed.
  const walk = (rel: string): string[] =>
    readdirSync(path.join(root, rel), { withFileTypes: true }).flatMap((e) => {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (excluded(r)) return [];
      return e.isDirectory() ? walk(r) : [r];
    });
  return walk('');
}

function copyWorkingTree(to: string): void {
  for (const rel of workingTreeFiles(PROJECT_ROOT)) {
    const from = path.join(PROJECT_ROOT, rel);
    if (lstatSync(from).isDirectory()) continue;
    mkdirSync(path.dirname(path.join(to, rel)), { recursive: true });
    cpSync(from, path.join(to, rel), { verbatimSymlinks: true });
  }
  symlinkSync(path.join(PROJECT_ROOT, 'node_modules'), path.join(to, 'node_modules'), 'dir');
  cpSync(path.join(PROJECT_ROOT, 'dist'), path.join(to, 'dist'), { recursive: true });
}

/** The bash script: a prelude, then each block between markers on fd 3, its output in its own file. */
function script(blocks: RunnableBlock[], port: number, outDir: string): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const parts = [
    'set -eo pipefail',
    'shopt -s expand_aliases',
    '# node_modules is linked and dist/ copied from the checkout under test (test/e2e/readme.test.ts).',
    'npm() { if [ "$1" = ci ]; then echo "readme test: npm ci skipped (node_modules linked, dist/ copied)"; else command npm "$@"; fi; }',
  ];
  for (const b of blocks) {
    parts.push(
      `echo 'start ${b.index}' >&3`,
      `exec >${q(path.join(outDir, `block-${b.index}.out`))} 2>&1`,
      onPort(b.code, port),
      `echo 'end ${b.index}' >&3`,
    );
  }
  parts.push('exec >/dev/null 2>&1', "echo 'done' >&3", '');
  return parts.join('\n');
}

function processGroupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stops everything the blocks started (the daemon in the background): SIGTERM to the group, SIGKILL after 15 s. */
async function killGroup(pgid: number): Promise<void> {
  if (!processGroupAlive(pgid)) return;
  try {
    process.kill(-pgid, 'SIGTERM');
  } catch {
    return;
  }
  const until = Date.now() + 15_000;
  while (processGroupAlive(pgid) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
  if (processGroupAlive(pgid)) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // Gone meanwhile.
    }
  }
}

/** An error envelope in a block's output (the daemon's own JSON log lines aside). */
function errorEnvelope(output: string): string | null {
  return output.split('\n').find((l) => /"success"\s*:\s*false/.test(l) && !/^\{"level"/.test(l)) ?? null;
}

describe('README.md: the runnable blocks, in order, in a copy of the working tree', () => {
  const readme = readFileSync(path.join(PROJECT_ROOT, 'README.md'), 'utf8');

  it("marks the newcomer's blocks runnable: set-up and first admin, then an agent run and its cancel", () => {
    const blocks = runnableBlocks(readme);
    expect(blocks.map((b) => b.heading)).to.deep.equal([
      'Operating: first admin, users, keys',
      'Running an agent, end to end',
    ]);
    expect(blocks[0]!.code).to.include('node dist/daemon/main.js start &').and.include('keen-admin.js init');
    expect(blocks[1]!.code).to.include('/v1/agents/execute').and.include('/cancel');
    expect(onPort('curl -s localhost:8080/v1/x "http://127.0.0.1:8080/y" localhost:80800', 4321)).to.equal(
      'curl -s localhost:4321/v1/x "http://127.0.0.1:4321/y" localhost:80800',
    );
    expect(() => runnableBlocks(`${MARKER}\ntext\n`)).to.throw('must be followed by a ```sh fence');
  });

  it('runs them with bash: every command succeeds, no error envelope, each block within its timeout', async function () {
    // About 30 s on a quiet machine; the whole run may take at most two blocks' timeouts.
    this.timeout(2 * BLOCK_TIMEOUT_MS);
    if (!existsSync(path.join(PROJECT_ROOT, 'dist/daemon/main.js')))
      throw new Error('dist/ is missing: run npm run build first');
    const blocks = runnableBlocks(readme);
    const dir = mkdtempSync(path.join(tmpdir(), 'keen-readme-'));
    const work = path.join(dir, 'keen-gateway');
    const outDir = path.join(dir, 'out');
    const home = path.join(dir, 'home');
    mkdirSync(work);
    mkdirSync(outDir);
    mkdirSync(home);
    copyWorkingTree(work);
    const port = await freePort();
    const scriptFile = path.join(dir, 'readme.sh');
    writeFileSync(scriptFile, script(blocks, port, outDir));
    const env: Record<string, string> = {
      PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? '/usr/bin:/bin'}`,
      HOME: home,
      XDG_CONFIG_HOME: path.join(home, '.config'),
      LANG: process.env.LANG ?? 'C.UTF-8',
      KEEN_PORT: String(port),
    };
    const outputOf = (i: number) => {
      const file = path.join(outDir, `block-${i}.out`);
      const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
      return text.length > 6000 ? `...${text.slice(-6000)}` : text;
    };
    const describeBlock = (i: number) => {
      const b = blocks[i - 1]!;
      return `README.md block ${b.index} (line ${b.line}, "${b.heading}")`;
    };

    const child = spawn('bash', [scriptFile], {
      cwd: work,
      env,
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
    });
    const pgid = child.pid!;
    let stderr = '';
    child.stderr!.on('data', (c) => (stderr += String(c)));
    try {
      const failure = await new Promise<string | null>((resolve) => {
        let current = 0;
        let timer: NodeJS.Timeout | undefined;
        let buf = '';
        const finish = (why: string | null) => {
          clearTimeout(timer);
          resolve(why);
        };
        child.stdio[3]!.on('data', (c: Buffer) => {
          buf += String(c);
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const [what, n] = buf.slice(0, nl).split(' ');
            buf = buf.slice(nl + 1);
            if (what === 'start') {
              current = Number(n);
              clearTimeout(timer);
              timer = setTimeout(
                () =>
                  finish(
                    `${describeBlock(current)} did not finish within ${BLOCK_TIMEOUT_MS / 1000} s; its output:\n${outputOf(current)}`,
                  ),
                BLOCK_TIMEOUT_MS,
              );
            } else if (what === 'end') {
              const bad = errorEnvelope(outputOf(Number(n)));
              if (bad)
                finish(
                  `${describeBlock(Number(n))} printed an error envelope: ${bad}\nits output:\n${outputOf(Number(n))}`,
                );
            } else if (what === 'done') {
              finish(null);
            }
          }
        });
        child.on('exit', (code, signal) => {
          if (code === 0) return;
          finish(
            `${current ? describeBlock(current) : 'the prelude'} exited with ${code ?? signal}; its output:\n${current ? outputOf(current) : ''}${stderr}`,
          );
        });
      });
      if (failure) expect.fail(failure);
      const agent = outputOf(2);
      // The run was admitted and cancelled, and its events were printed by keen-admin sessions logs.
      expect(agent).to.match(/"status":"cancelled"/);
      expect(agent).to.match(/#1 +session\.status +running/);
    } finally {
      await killGroup(pgid);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
