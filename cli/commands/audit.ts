import { Command, Option } from 'commander';
import type { AuditEntry } from '../../schemas/types.gen.js';
import type { AuditFilters, KeenClient } from '../../sdk/src/index.js';
import { clientFor, globals, parsePositiveInt, type GlobalOptions } from '../core/context.js';
import { CliError, escapeText } from '../core/output.js';
import { grouped, startProgress } from '../core/progress.js';

/** Re-exported: it moved to cli/core/output.ts, which `sessions watch` shares. */
export { escapeText };

interface VerifyResponse {
  ok: boolean;
  entries: number;
  archived_entries: number;
  last_seq: number | null;
  first_bad: { seq: number; id: string | null; reason: string; message: string } | null;
  checkpoints: { available: boolean; ok: boolean; checked: number; skipped: number };
}

/** No line (heartbeats included) for this long: the connection is dead, reconnect. */
const STALL_MS = 45_000;
const BACKOFF_MAX_MS = 15_000;
/** How long `audit verify` waits for the daemon's answer, which comes at the end of the check. */
const LONG_JOB_TIMEOUT_MS = 60 * 60_000;

/** One line per entry for people: time, seq, outcome, action, actor, target, tenant, details. */
export function formatEntry(e: AuditEntry): string {
  const who = (type: string | null, id: string | null) => (type ? (id ? `${type}:${id}` : type) : '-');
  const details = Object.keys(e.details ?? {}).length > 0 ? JSON.stringify(e.details) : '';
  const fields = [
    new Date(e.ts).toISOString(),
    `#${e.seq}`,
    e.outcome.padEnd(7),
    e.action,
    who(e.actor_type, e.actor_id),
    '->',
    who(e.target_type, e.target_id),
    `tenant=${e.tenant_id ?? '-'}`,
    details,
  ];
  return escapeText(fields.join(' ').trimEnd()) + '\n';
}

/** `2h`, `30m`, `7d` (that long ago) or an ISO date -> ISO date-time. */
export function parseSince(value: string): string {
  const m = /^(\d+)([smhd])$/.exec(value);
  if (m) {
    const ms = Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
    return new Date(Date.now() - ms).toISOString();
  }
  const t = Date.parse(value);
  if (!Number.isFinite(t)) throw new CliError(`expected a time like 2h, 30m, 7d or an ISO date, got "${value}"`, 2);
  return new Date(t).toISOString();
}

/** --user: an id or an email, resolved to the user's id (404 when out of the caller's scope). */
async function resolveUser(cmd: Command, user: string): Promise<string> {
  return (await clientFor(cmd).users.get(user)).id;
}

/** The client of the JSON Lines calls (SDK `client.audit`); without a key they keep their own message. */
function streamClient(cmd: Command): KeenClient {
  if (!globals(cmd).apiKey) throw new CliError('no API key: set KEEN_API_KEY (or pass --api-key)', 2);
  return clientFor(cmd);
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

/** Aborts on Ctrl-C or SIGTERM, so a follow ends cleanly with exit code 0. */
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

/**
 * Follows the live feed after `afterSeq` until interrupted, reconnecting with
 * jittered exponential backoff from the last seq seen; a refused request
 * (authentication, scope, validation) is not retried.
 */
async function follow(
  g: GlobalOptions,
  client: KeenClient,
  filters: AuditFilters,
  afterSeq: number | null,
  print: (e: AuditEntry) => void,
): Promise<void> {
  const interrupt = interruptSignal();
  let last = afterSeq;
  let attempt = 0;
  try {
    while (!interrupt.signal.aborted) {
      const conn = new AbortController();
      const onInterrupt = () => conn.abort();
      interrupt.signal.addEventListener('abort', onInterrupt, { once: true });
      let stall: NodeJS.Timeout | undefined;
      const armStall = () => {
        clearTimeout(stall);
        stall = setTimeout(() => conn.abort(), STALL_MS);
      };
      try {
        armStall();
        for await (const item of client.audit.stream<AuditEntry>(
          { ...filters, after_seq: last === null ? undefined : last },
          { signal: conn.signal },
        )) {
          armStall();
          attempt = 0;
          if ('type' in item && item.type === 'heartbeat') {
            last = Math.max(last ?? 0, item.after_seq);
            continue;
          }
          const entry = item as AuditEntry;
          if (last !== null && entry.seq <= last) continue;
          last = entry.seq;
          print(entry);
        }
      } catch (err) {
        if (interrupt.signal.aborted) break;
        const status = (err as { status?: number | null }).status;
        if (err instanceof CliError || (typeof status === 'number' && status < 500 && status !== 429)) throw err;
        if (g.verbose) process.stderr.write(`keen-admin: stream interrupted: ${(err as Error).message}\n`);
      } finally {
        clearTimeout(stall);
        interrupt.signal.removeEventListener('abort', onInterrupt);
      }
      if (interrupt.signal.aborted) break;
      const delay = Math.min(BACKOFF_MAX_MS, 250 * 2 ** attempt++) * (0.5 + Math.random() / 2);
      process.stderr.write(
        `keen-admin: audit stream closed; reconnecting after seq ${last ?? 'head'} in ${Math.round(delay)} ms\n`,
      );
      await sleep(delay, interrupt.signal);
    }
  } finally {
    interrupt.abort();
  }
}

/**
 * `--type`, the first name of `--action` (the API's query parameter is
 * `action`): still accepted, hidden from --help and completion, with a warning.
 */
function deprecatedTypeOption(): Option {
  return new Option('--type <action>', 'deprecated: use --action').hideHelp();
}

/** The action filter of `--action`, or of the deprecated `--type` (with a warning); both at once is a usage error. */
export function actionOf(opts: { action?: string; type?: string }): string | undefined {
  if (opts.type === undefined) return opts.action;
  if (opts.action !== undefined)
    throw new CliError('--type is the deprecated name of --action: give only --action', 2, 'INVALID_ARGUMENT');
  process.stderr.write("keen-admin: warning: --type is deprecated; use --action (the API's query parameter)\n");
  return opts.type;
}

/** `keen-admin audit ...` */
export function auditCommand(): Command {
  const audit = new Command('audit').description('read, follow, verify and export the audit log');

  audit
    .command('tail')
    .description(
      'print the latest audit entries (oldest first); with --follow, keep printing new ones until interrupted',
    )
    .option('--follow', 'stream new entries as they are written (reconnects by itself)')
    .option('--action <action>', 'only this action (auth.login) or resource (auth.*)')
    .addOption(deprecatedTypeOption())
    .option('--user <user>', 'only entries by or about this user (id or email)')
    .option('--since <time>', 'only entries since this time: 2h, 30m, 7d or an ISO date')
    .addOption(new Option('--outcome <outcome>', 'only this outcome').choices(['success', 'failure', 'denied']))
    .option('--tenant <id>', 'only this tenant (platform admins)')
    .option('--limit <n>', 'how many of the latest entries to print first (1-500)', parsePositiveInt('--limit'), 20)
    .addHelpText(
      'after',
      '\nExamples:\n  keen-admin audit tail --action "auth.*" --since 2h\n  keen-admin audit tail --follow --user ana@example.com --json | jq .action',
    )
    .action(async (opts, cmd: Command) => {
      const g = globals(cmd);
      const filters: AuditFilters = {
        action: actionOf(opts),
        user_id: opts.user ? await resolveUser(cmd, opts.user) : undefined,
        since: opts.since ? parseSince(opts.since) : undefined,
        outcome: opts.outcome,
        tenant_id: opts.tenant,
      };
      const print = (e: AuditEntry) => process.stdout.write(g.json ? `${JSON.stringify(e)}\n` : formatEntry(e));
      const r = await clientFor(cmd).audit.list({ ...filters, limit: Math.min(500, opts.limit), order: 'desc' });
      const latest = [...r.entries].reverse();
      for (const e of latest) print(e);
      if (!g.json && latest.length === 0 && !opts.follow) process.stdout.write('(no entries)\n');
      if (opts.follow) await follow(g, streamClient(cmd), filters, latest.at(-1)?.seq ?? null, print);
    });

  audit
    .command('verify')
    .description('recompute the hash chain and check the signed checkpoints; exit 1 naming the first broken entry')
    .addHelpText('after', '\nExample:\n  keen-admin audit verify || echo "audit log tampered with"')
    .action(async (_opts, cmd: Command) => {
      const g = globals(cmd);
      const client = clientFor(cmd, { timeout: LONG_JOB_TIMEOUT_MS });
      // The daemon answers once at the end: on a terminal, the time so far and how many entries it checks.
      const head = process.stderr.isTTY ? (await client.audit.list({ limit: 1, order: 'desc' })).entries[0] : undefined;
      const total = grouped(head?.seq ?? 0);
      const progress = startProgress(
        ({ elapsed }) => `keen-admin: the daemon is checking the chain of ${total} entries... ${elapsed.toFixed(0)} s`,
      );
      let r: VerifyResponse;
      try {
        r = await client.audit.verify();
      } finally {
        progress.done();
      }
      if (g.json) process.stdout.write(`${JSON.stringify(r)}\n`);
      if (!r.ok) {
        const bad = r.first_bad;
        const where = bad
          ? `seq ${bad.seq}${bad.id ? ` (${bad.id})` : ''}: ${bad.reason}: ${bad.message}`
          : 'unknown entry';
        throw new CliError(escapeText(`audit chain broken at ${where}`), 1, 'CHAIN_BROKEN');
      }
      if (!g.json) {
        const cp = r.checkpoints.available
          ? `, ${r.checkpoints.checked} checkpoints verified${r.checkpoints.skipped ? ` (${r.checkpoints.skipped} skipped: archived)` : ''}`
          : ', no checkpoints on this daemon';
        const archived = r.archived_entries ? ` + ${r.archived_entries} archived` : '';
        process.stdout.write(`chain intact: ${r.entries} entries${archived} (last seq ${r.last_seq ?? '-'})${cp}\n`);
      }
    });

  audit
    .command('export')
    .description('write the entries of a time range to standard output as JSON Lines (oldest first)')
    .requiredOption('--since <time>', 'from this time (inclusive): 2h, 30m, 7d or an ISO date')
    .option('--until <time>', 'to this time (exclusive): 2h, 30m, 7d or an ISO date (default: now)')
    .option('--action <action>', 'only this action (auth.login) or resource (auth.*)')
    .addOption(deprecatedTypeOption())
    .option('--tenant <id>', 'only this tenant (platform admins)')
    .addHelpText(
      'after',
      '\nExamples:\n  keen-admin audit export --since 2026-01-01 --until 2026-02-01 > audit-january.jsonl\n  keen-admin audit export --since 7d --action "key.*" > key-changes.jsonl',
    )
    .action(async (opts, cmd: Command) => {
      const filters: AuditFilters = {
        since: parseSince(opts.since),
        until: opts.until ? parseSince(opts.until) : undefined,
        action: actionOf(opts),
        tenant_id: opts.tenant,
      };
      const client = streamClient(cmd);
      const ac = interruptSignal();
      // On a terminal: entries written so far and the rate (the total is not known before the end).
      const rate = (n: number, s: number) =>
        `${grouped(n)} entries, ${grouped(s >= 0.5 ? n / s : 0)}/s, ${s.toFixed(0)} s`;
      const progress = startProgress(({ count, elapsed }) => `keen-admin: exporting: ${rate(count, elapsed)}`);
      const started = performance.now();
      let exported = 0;
      try {
        // Each line re-serialized is the line the gateway sent (it writes JSON.stringify of a parsed entry).
        for await (const entry of client.audit.export<AuditEntry>(filters, { signal: ac.signal })) {
          if (!process.stdout.write(`${JSON.stringify(entry)}\n`))
            await new Promise((r) => process.stdout.once('drain', r));
          exported++;
          progress.add();
        }
        progress.done(`keen-admin: exported ${rate(exported, (performance.now() - started) / 1000)}`);
      } finally {
        progress.done();
        ac.abort();
      }
    });

  return audit;
}
