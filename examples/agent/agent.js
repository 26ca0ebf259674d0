#!/usr/bin/env node
// A pure example agent for keen-gateway (docs/agent-protocol.md).
//
// It reads one JSON line from stdin ({vision, workingDirectory, options}),
// reports what it does as JSON lines on stdout, writes a few real files into
// its working directory and ends with a `result` line. It knows nothing about
// users, credits or limits: it is never told any.
//
// Behaviour switches in the vision text (see README.md): [fail] [crash]
// [slow:MS] [overspend] [ignore-sigterm] [dump] [garbage] [iterations:N]
// [stderr:BYTES] [grandchild]
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function switches(vision) {
  const num = (name, fallback) => {
    const m = new RegExp(`\\[${name}:(\\d+)\\]`).exec(vision);
    return m ? Number(m[1]) : fallback;
  };
  return {
    fail: vision.includes('[fail]'),
    crash: vision.includes('[crash]'),
    overspend: vision.includes('[overspend]'),
    ignoreSigterm: vision.includes('[ignore-sigterm]'),
    dump: vision.includes('[dump]'),
    garbage: vision.includes('[garbage]'),
    grandchild: vision.includes('[grandchild]'),
    slowMs: num('slow', 0),
    iterations: num('iterations', null),
    stderrBytes: num('stderr', 0),
  };
}

/** A file name-safe, short slug of the vision without its switches. */
function slug(text) {
  const s = text
    .replace(/\[[a-z-]+(?::\d+)?\]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40);
  return s || 'project';
}

async function main() {
  const raw = await readStdin();
  const line = raw.split('\n')[0] ?? '';
  const request = JSON.parse(line);
  const { vision, workingDirectory, options } = request;
  const sw = switches(vision);
  const dir = workingDirectory || process.cwd();

  if (sw.ignoreSigterm) process.on('SIGTERM', () => emit({ type: 'log', level: 'warn', message: 'SIGTERM ignored' }));
  if (sw.dump) {
    writeFileSync(
      path.join(dir, 'dump.json'),
      JSON.stringify({ stdin: raw, env: process.env, cwd: process.cwd(), argv: process.argv }, null, 2),
    );
  }
  if (sw.stderrBytes > 0) process.stderr.write('e'.repeat(sw.stderrBytes));
  if (sw.grandchild) {
    // A child that ignores SIGTERM, never ends and holds our stdout open; it records its pid
    // so a test can check that the gateway killed it with the rest of the process group.
    const child = spawn(process.execPath, ['-e', 'process.on("SIGTERM",()=>{});setInterval(()=>{},1000)'], {
      stdio: ['ignore', 'inherit', 'ignore'],
    });
    child.unref();
    writeFileSync(path.join(dir, 'grandchild.pid'), String(child.pid));
  }

  const maxIterations = Math.max(1, Number(options?.maxIterations) || 1);
  const steps = Math.min(sw.iterations ?? (sw.overspend ? 1000 : 2), sw.overspend ? 100000 : maxIterations);
  const pause = sw.slowMs || (sw.overspend ? 50 : 0);
  const garbage = () => {
    if (!sw.garbage) return;
    process.stdout.write('this is not json\n');
    emit({ type: 'phase' }); // missing field
    emit({ type: 'usage', input_tokens: -5, output_tokens: 1, web_searches: 0 }); // negative
    emit({ type: 'log', level: 'info', message: 'x', extra: true }); // unknown field
    emit(['type', 'phase']);
  };

  emit({ type: 'log', level: 'info', message: `received vision (${vision.length} characters)` });
  let done = 0;
  const total = 3 + steps; // explore, plan, each step, verify
  const progress = (message) => {
    done += 1;
    if (options?.showProgress !== false)
      emit({ type: 'progress', message, percent: Math.min(100, Math.round((done / total) * 100)) });
  };

  emit({ type: 'phase', phase: 'EXPLORE' });
  garbage();
  emit({ type: 'log', level: 'debug', message: `working in ${dir}` });
  progress('explored the workspace');
  if (pause) await sleep(pause);

  emit({ type: 'phase', phase: 'PLAN' });
  const name = slug(vision);
  const plan = [
    `# Plan`,
    '',
    `Vision: ${vision}`,
    '',
    ...Array.from({ length: steps }, (_, i) => `${i + 1}. step ${i + 1}`),
    '',
  ].join('\n');
  writeFileSync(path.join(dir, 'PLAN.md'), plan);
  progress('wrote PLAN.md');
  if (pause) await sleep(pause);

  emit({ type: 'phase', phase: 'BUILD' });
  mkdirSync(path.join(dir, 'src'), { recursive: true });
  for (let i = 1; i <= steps; i++) {
    if (sw.crash && i === Math.ceil(steps / 2)) {
      emit({ type: 'log', level: 'error', message: 'crashing on purpose' });
      process.exit(3);
    }
    emit({
      type: 'usage',
      input_tokens: sw.overspend ? 1_000_000 : 1200 + i * 10,
      output_tokens: sw.overspend ? 200_000 : 300 + i * 5,
      web_searches: options?.enableWebSearch ? 1 : 0,
    });
    garbage();
    progress(`step ${i} of ${steps}`);
    if (pause) await sleep(pause);
  }
  writeFileSync(
    path.join(dir, 'src', `${name}.js`),
    `// Generated for: ${vision.replace(/\n/g, ' ')}\nexport const name = ${JSON.stringify(name)};\nexport const steps = ${steps};\n`,
  );

  emit({ type: 'phase', phase: 'VERIFY' });
  emit({ type: 'log', level: 'info', message: 'checked the generated files' });
  progress('verified');
  if (sw.fail) {
    emit({ type: 'log', level: 'error', message: 'verification failed on purpose' });
    emit({ type: 'result', status: 'failed', summary: `could not finish ${name}` });
    process.exitCode = 1;
    return;
  }
  emit({ type: 'result', status: 'completed', summary: `built ${name} in ${steps} steps: PLAN.md, src/${name}.js` });
}

main().catch((err) => {
  process.stderr.write(`agent error: ${err?.stack ?? err}\n`);
  process.exitCode = 2;
});
