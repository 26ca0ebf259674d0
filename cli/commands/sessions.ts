import { Command, Option } from 'commander';
import {
  NotFoundError,
  type KeenClient,
  type Session,
  type SessionStatus,
  type StreamEvent,
} from '../../sdk/src/index.js';
import { clientFor, globals } from '../core/context.js';
import { CliError, colorEnabled, escapeText, paint, printResult, type Style } from '../core/output.js';

const COLUMNS = [
  'id',
  'user_id',
  'status',
  'current_phase',
  'cost_so_far',
  'credit_reserved',
  'final_cost',
  'created_at',
  'ended_at',
];
const STATUSES = ['running', 'completed', 'failed', 'cancelled', 'budget_exhausted', 'timed_out', 'interrupted'];

/** Exit code of `sessions watch` when the watch was stopped (Ctrl-C, SIGTERM) before the session ended: 128 + SIGINT. */
export const WATCH_STOPPED = 130;

/** `sessions watch`: 0 for a completed session, 1 for any other end (failed, cancelled, timed out, interrupted, budget exhausted). */
export function exitCodeForStatus(status: SessionStatus | string): 0 | 1 {
  return status === 'completed' ? 0 : 1;
}

/** The colour of a status word: green done, cyan running, yellow stopped by someone, red otherwise. */
function statusStyle(status: string): Style {
  if (status === 'completed') return 'green';
  if (status === 'running') return 'cyan';
  if (status === 'cancelled') return 'yellow';
  return 'red';
}

const TYPE_STYLE: Record<string, Style> = {
  'session.status': 'bold',
  'agent.phase': 'magenta',
  'agent.progress': 'blue',
  'agent.log': 'dim',
  'cost.update': 'cyan',
};
const LEVEL_STYLE: Record<string, Style> = { warn: 'yellow', error: 'red' };

/** Anything from the event as one escaped line: the agent wrote it, and it must not drive the terminal. */
const text = (v: unknown): string =>
  escapeText(typeof v === 'string' ? v : v === undefined || v === null ? '' : JSON.stringify(v));

/**
 * The short summary of one event for people, escaped (control characters,
 * separators and bidi overrides as `\uXXXX`), coloured when `color`. A final
 * status's multi-line summary (agent stderr) follows on indented lines, each
 * escaped on its own.
 */
export function formatEvent(
  e: StreamEvent | { type: string; seq: number; ts: string; data: Record<string, unknown> },
  color = false,
): string {
  const d = (e.data ?? {}) as Record<string, unknown>;
  const time = Number.isFinite(Date.parse(e.ts)) ? new Date(e.ts).toISOString().slice(11, 19) : text(e.ts);
  let summary: string;
  const extra: string[] = [];
  switch (e.type) {
    case 'session.status': {
      const status = text(d.status);
      const parts = [paint(color, statusStyle(String(d.status)), status)];
      if (typeof d.final_cost === 'number') parts.push(`final cost ${d.final_cost}`);
      if (d.reason !== undefined && d.reason !== null && d.reason !== d.status) parts.push(`(${text(d.reason)})`);
      summary = parts.join(' ');
      if (typeof d.summary === 'string' && d.summary !== '')
        extra.push(...d.summary.split(/\r?\n/).map((l) => `    ${escapeText(l)}`));
      break;
    }
    case 'agent.phase':
      summary = `phase ${text(d.phase)}`;
      break;
    case 'agent.progress':
      summary = `${text(d.message)}${typeof d.percent === 'number' ? ` (${d.percent}%)` : ''}`;
      break;
    case 'agent.log': {
      const level = text(d.level);
      summary = `${paint(color, LEVEL_STYLE[String(d.level)] ?? null, level.padEnd(5))} ${text(d.message)}`;
      break;
    }
    case 'cost.update':
      summary = `cost so far ${text(d.cost_so_far)} of ${text(d.reserved)} reserved`;
      break;
    default:
      summary = text(d);
  }
  const type = paint(color, TYPE_STYLE[e.type] ?? null, text(e.type).padEnd(14));
  return [`${time}  #${String(e.seq).padEnd(4)} ${type}  ${summary}`.trimEnd(), ...extra].join('\n') + '\n';
}

/** The closing line of `watch`: final status, cost and usage. */
export function formatEnd(s: Session, color = false): string {
  const cost = s.final_cost ?? s.cost_so_far;
  const usage = s.usage
    ? `; ${s.usage.input_tokens} input and ${s.usage.output_tokens} output tokens, ${s.usage.web_searches} web searches`
    : '';
  const reason = s.end_reason && s.end_reason !== s.status ? ` (${text(s.end_reason)})` : '';
  return `${text(s.id)} ${paint(color, statusStyle(s.status), text(s.status))}${reason}: ${s.final_cost === null ? 'cost so far' : 'final cost'} ${cost} credits of ${s.credit_reserved} reserved${usage}\n`;
}

/** Writes and waits for the pipe to drain when it is full (`sessions logs | less`). */
async function write(line: string): Promise<void> {
  if (!process.stdout.write(line)) await new Promise((r) => process.stdout.once('drain', r));
}

/** Every stored event of a session, page after page (`GET /v1/sessions/:id/events`, 1000 a page), oldest first. */
export async function* storedEvents(
  client: KeenClient,
  id: string,
  signal?: AbortSignal,
): AsyncGenerator<StreamEvent, number, undefined> {
  let after = 0;
  for (;;) {
    const page = await readable(id, () =>
      client.sessions.events(id, { after, limit: 1000, ...(signal ? { signal } : {}) }),
    );
    const events = (page.events as StreamEvent[]).filter((e) => e.seq > after);
    for (const e of events) yield e;
    if (events.length === 0) return after;
    after = events[events.length - 1]!.seq;
    if (after >= page.last_seq) return after;
  }
}

/**
 * A session read through `/v1/sessions` (what `watch` and `logs` use): a 404
 * also means "not yours", so say what this key may read.
 */
async function readable<T>(id: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof NotFoundError) {
      throw new CliError(
        `no session ${escapeText(id)} that this key may read: watch and logs read with sessions:read what the key's user may (its own sessions; a tenant admin's: the tenant's); use the owner's key (KEEN_API_KEY=...) or list sessions with keen-admin sessions list`,
        1,
        'NOT_FOUND',
        err.requestId ?? undefined,
      );
    }
    throw err;
  }
}

/** Aborts on Ctrl-C or SIGTERM: a watch then stops (the session goes on). */
function interruptSignal(): AbortController {
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  ac.signal.addEventListener('abort', () => {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  });
  return ac;
}

interface PrintOptions {
  json?: boolean;
  color?: boolean;
}

function printer(
  cmd: Command,
  opts: { color?: boolean },
): { json: boolean; color: boolean; print: (e: StreamEvent) => Promise<void> } {
  const json = Boolean(globals(cmd).json);
  const color = !json && colorEnabled({ color: opts.color !== false });
  return { json, color, print: (e) => write(json ? `${JSON.stringify(e)}\n` : formatEvent(e, color)) };
}

const COLOR_HELP =
  'Colour only on a terminal, never with NO_COLOR set (any non-empty value; https://no-color.org) or --no-color.';

/** `keen-admin sessions ...` */
export function sessionsCommand(): Command {
  const sessions = new Command('sessions').description('list, follow, read and cancel agent sessions');
  sessions
    .command('list')
    .description('sessions, newest first')
    .option('--user <user>', "only this user's (id or email)")
    .addOption(new Option('--status <status>', 'only this status').choices(STATUSES))
    .option('--limit <n>', 'how many (1-100)', '50')
    .addHelpText('after', '\nExample:\n  keen-admin sessions list --status running')
    .action(async (opts, cmd: Command) => {
      const r = await clientFor(cmd).sessions.adminList({
        user_id: opts.user,
        status: opts.status,
        limit: Number(opts.limit),
      });
      printResult(globals(cmd), r, r.sessions as unknown as Array<Record<string, unknown>>, COLUMNS);
    });
  sessions
    .command('watch <id>')
    .description(
      'follow a session live: each event as it arrives, then its final status and cost; exit 0 when it completed, 1 when it ended otherwise',
    )
    .option('--no-color', 'no colour, even on a terminal')
    .addHelpText(
      'after',
      '\nEach event is one line: time (UTC), seq, type and a summary (phase, progress, agent log, cost so far, status).\n' +
        'A session that already ended is printed whole, then the command ends. With --json: JSON Lines, one event per line, as stored.\n' +
        'Text from the agent is printed with control characters escaped (\\u001b...). ' +
        COLOR_HELP +
        "\nReads what the API key may read with sessions:read (its own sessions; a tenant admin: the tenant's).\n" +
        'Exit codes: 0 the session completed; 1 it failed, was cancelled, timed out, was interrupted or exhausted its budget\n' +
        '(or the request failed); 3 daemon unreachable; 130 stopped with Ctrl-C before the end (the session goes on).\n' +
        '\nExamples:\n  keen-admin sessions watch ses_01j...\n  keen-admin sessions watch ses_01j... --json | jq -r .type\n  keen-admin sessions watch ses_01j... >/dev/null && echo "it completed"',
    )
    .action(async (id: string, opts: PrintOptions, cmd: Command) => {
      const client = clientFor(cmd);
      const out = printer(cmd, opts);
      const ac = interruptSignal();
      try {
        const first = await readable(id, () => client.sessions.get(id, { signal: ac.signal }));
        if (first.status === 'running') {
          // Replayed from the first event, then live, with no gap across reconnections; ends after the final status.
          for await (const e of client.stream(first.id, { after: 0, signal: ac.signal })) await out.print(e);
        } else {
          for await (const e of storedEvents(client, first.id, ac.signal)) await out.print(e);
        }
        if (ac.signal.aborted) {
          process.stderr.write(
            `keen-admin: stopped watching; ${escapeText(first.id)} goes on (keen-admin sessions watch ${escapeText(first.id)} to follow it again)\n`,
          );
          process.exitCode = WATCH_STOPPED;
          return;
        }
        const end = await client.sessions.get(first.id);
        if (!out.json) await write(formatEnd(end, out.color));
        process.exitCode = exitCodeForStatus(end.status);
      } catch (err) {
        if (ac.signal.aborted) {
          process.stderr.write(`keen-admin: stopped watching ${escapeText(id)}\n`);
          process.exitCode = WATCH_STOPPED;
          return;
        }
        throw err;
      } finally {
        ac.abort();
      }
    });
  sessions
    .command('logs <id>')
    .description('print the stored events of a session (all of them, oldest first) and exit')
    .option('--no-color', 'no colour, even on a terminal')
    .addHelpText(
      'after',
      '\nOne line per event: time (UTC), seq, type and a summary; agent text with control characters escaped. ' +
        'With --json: JSON Lines, one event per line, exactly as GET /v1/sessions/:id/events has them. ' +
        COLOR_HELP +
        '\nA running session prints what it stored so far (sessions watch follows it).\n' +
        '\nExamples:\n  keen-admin sessions logs ses_01j...\n  keen-admin sessions logs ses_01j... --json > ses_01j.jsonl',
    )
    .action(async (id: string, opts: PrintOptions, cmd: Command) => {
      const client = clientFor(cmd);
      const out = printer(cmd, opts);
      let count = 0;
      for await (const e of storedEvents(client, id)) {
        count++;
        await out.print(e);
      }
      if (!out.json && count === 0) await write('(no events)\n');
    });
  sessions
    .command('cancel <id>')
    .description("stop a session's agent; it is charged what it used and the rest is released")
    .addHelpText('after', '\nExample:\n  keen-admin sessions cancel ses_01j...')
    .action(async (id: string, _opts, cmd: Command) => {
      const session = await clientFor(cmd).sessions.adminCancel(id);
      printResult(globals(cmd), { success: true, session }, [session as unknown as Record<string, unknown>], COLUMNS);
    });
  return sessions;
}
