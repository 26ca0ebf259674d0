#!/usr/bin/env node
// Runs one agent through keen-gateway and follows it live with @keen/sdk:
// phases, progress and cost as they stream, then the final status and charge.
//
//   KEEN_URL=http://127.0.0.1:8080 KEEN_API_KEY=ak_live_... node run.mjs "Build a todo app with tests"
//
// Optional: KEEN_BUDGET (credits to reserve, e.g. 5). Ctrl-C cancels the run
// (it is charged what it used so far). Exit codes: 0 completed, 1 the run
// failed or another error, 2 missing configuration, 3 not enough credits,
// 4 rate limited for longer than this example waits, 130 cancelled.

/** The installed package, or the SDK built in this repository (`npx tsc -p sdk/tsconfig.json`). */
async function loadSdk() {
  try {
    return await import('@keen/sdk');
  } catch (err) {
    if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !String(err.message).includes('@keen/sdk')) throw err;
    return import('../../sdk/dist/index.js');
  }
}

const { KeenClient, KeenError, InsufficientCreditsError, RateLimitError } = await loadSdk();

const baseUrl = process.env.KEEN_URL;
const apiKey = process.env.KEEN_API_KEY;
if (!baseUrl || !apiKey) {
  console.error('set KEEN_URL (e.g. http://127.0.0.1:8080) and KEEN_API_KEY (ak_live_...)');
  process.exit(2);
}
const vision = process.argv.slice(2).join(' ') || 'Build a small todo application with tests';
const options = process.env.KEEN_BUDGET ? { costBudget: Number(process.env.KEEN_BUDGET) } : {};

const client = new KeenClient({ baseUrl, apiKey });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits out a 429 (too many requests, or all session slots busy) a few times, as the server asks. */
async function start() {
  for (let attempt = 1; ; attempt++) {
    try {
      return await client.execute({ vision, options });
    } catch (err) {
      if (!(err instanceof RateLimitError) || attempt === 3) throw err;
      const wait = err.retryAfter ?? 5;
      if (wait > 300) throw err; // not worth holding the terminal for
      console.log(`rate limited (${err.code}): retrying in ${wait} s`);
      await sleep(wait * 1000);
    }
  }
}

const stop = new AbortController();
process.once('SIGINT', () => stop.abort());

try {
  const run = await start();
  const id = run.session.id;
  console.log(`session  ${id}: ${run.credit_reserved} credits reserved (estimate ${run.session.estimated_cost})`);
  let final = null;
  for await (const e of client.stream(id, { signal: stop.signal })) {
    switch (e.type) {
      case 'agent.phase':
        console.log(`phase    ${e.data.phase}`);
        break;
      case 'agent.progress':
        console.log(`progress ${e.data.percent === undefined ? '' : `${e.data.percent}% `}${e.data.message}`);
        break;
      case 'cost.update':
        console.log(`cost     ${e.data.cost_so_far} of ${e.data.reserved} credits`);
        break;
      case 'agent.log':
        if (e.data.level === 'warn' || e.data.level === 'error')
          console.log(`${e.data.level.padEnd(8)} ${e.data.message}`);
        break;
      case 'session.status':
        if (e.data.status !== 'running') final = e.data;
        break;
    }
  }
  if (stop.signal.aborted) {
    const s = await client.sessions.cancel(id);
    console.log(`cancelled: charged ${s.final_cost} credits`);
    process.exitCode = 130;
  } else {
    console.log(
      `done     ${final.status}: charged ${final.final_cost} credits${final.summary ? `\n${final.summary}` : ''}`,
    );
    process.exitCode = final.status === 'completed' ? 0 : 1;
  }
} catch (err) {
  if (err instanceof InsufficientCreditsError) {
    console.error(
      `not enough credits: this run needs ${err.required}, ${err.available} available (short by ${err.shortfall})`,
    );
    process.exitCode = 3;
  } else if (err instanceof RateLimitError) {
    console.error(`rate limited (${err.code}): try again in ${err.retryAfter ?? '?'} s`);
    process.exitCode = 4;
  } else if (err instanceof KeenError) {
    console.error(`${err.name} ${err.code}: ${err.message}${err.requestId ? ` (request ${err.requestId})` : ''}`);
    process.exitCode = 1;
  } else {
    throw err;
  }
}
