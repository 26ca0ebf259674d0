// The browser example of @keen/sdk: start an agent run and follow its stream
// live, from a web page. Bundle it (the SDK ships ES modules; `ws` is never
// included in a browser bundle):
//
//   npx esbuild main.js --bundle --format=esm --outfile=app.js
//
// and serve index.html and app.js from the gateway's own origin (the gateway
// sends no CORS headers; put both behind the same reverse proxy), with that
// origin listed in the gateway's `stream.allowed_origins`. The SDK sees it runs
// in a browser and opens the stream with a single-use ticket
// (POST /v1/stream/tickets), never an Authorization header, which browsers
// cannot set on a WebSocket.
//
// `index.html#credential=...&vision=...&budget=3` starts a run at once (the
// fragment never leaves the browser); the outcome lands in
// <body data-state="done|failed"> and, as JSON, in <output id="result">.
import { InsufficientCreditsError, KeenClient, KeenError } from '@keen/sdk';

const $ = (id) => document.getElementById(id);
const log = (line) => {
  $('log').textContent += `${line}\n`;
};

/** Runs `vision` and follows it to its end; what the stream delivered. */
async function run({ credential, vision, budget }) {
  const auth = credential.startsWith('ak_') ? { apiKey: credential } : { accessToken: credential };
  const client = new KeenClient({ baseUrl: location.origin, ...auth });
  const { session, credit_reserved } = await client.execute({ vision, options: { costBudget: budget } });
  log(`session  ${session.id}: ${credit_reserved} credits reserved`);
  const events = [];
  let status = 'running';
  for await (const e of client.stream(session.id)) {
    events.push({ type: e.type, seq: e.seq });
    if (e.type === 'agent.phase') log(`phase    ${e.data.phase}`);
    if (e.type === 'agent.progress') log(`progress ${e.data.percent ?? ''} ${e.data.message ?? ''}`);
    if (e.type === 'cost.update') log(`cost     ${e.data.cost_so_far}`);
    if (e.type === 'session.status' && e.data.status !== 'running') {
      status = e.data.status;
      log(`done     ${status}: charged ${e.data.final_cost}`);
    }
  }
  return { session_id: session.id, status, events };
}

async function start(params) {
  document.body.dataset.state = 'running';
  try {
    const result = await run(params);
    $('result').textContent = JSON.stringify(result);
    document.body.dataset.state = 'done';
  } catch (err) {
    let message = err instanceof Error ? err.message : String(err);
    if (err instanceof InsufficientCreditsError) message = `not enough credits: short by ${err.shortfall}`;
    else if (err instanceof KeenError) message = `${err.code}: ${err.message}`;
    log(`error    ${message}`);
    $('result').textContent = JSON.stringify({ error: message });
    document.body.dataset.state = 'failed';
  }
}

$('run').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  void start({
    credential: String(form.get('credential')),
    vision: String(form.get('vision')),
    budget: Number(form.get('budget')),
  });
});

const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get('credential')) {
  void start({
    credential: fragment.get('credential'),
    vision: fragment.get('vision') || 'Build a small todo application',
    budget: Number(fragment.get('budget') || 3),
  });
}
