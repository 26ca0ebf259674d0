import type { Server } from 'node:http';
import { PassThrough, Readable } from 'node:stream';
import { toJsonLine, type AuditRecord } from '../../audit/entry.js';
import { AuditQueryError, DEFAULT_PAGE_SIZE, type AuditFilters, type AuditQuery } from '../../audit/query.js';
import type { DatabaseAuditLogger } from '../../audit/store.js';
import type { AuditVerification } from '../../audit/verification.js';
import { GatewayError } from '../../errors.js';
import { reachFor, type Reach } from '../../policies/index.js';
import { cursorOf, limitOf, type AppContext } from '../context.js';
import { principalOf } from '../middleware/authenticate.js';
import { defineRoute, defineRoutes } from '../routes.js';
import { presentAuditEntry } from '../presenters/audit.js';

/** A heartbeat line goes out when the stream has been quiet this long, so proxies and clients see it alive. */
export const HEARTBEAT_MS = 15_000;
/** How often an open stream checks that its server still accepts connections (shutdown ends it). */
const SHUTDOWN_CHECK_MS = 250;
const NDJSON = 'application/x-ndjson';

export interface AdminAuditDeps {
  audit: DatabaseAuditLogger;
  /** Pages, the live tail's reads and the export (over the audit repository). */
  query: AuditQuery;
  /** The chain and checkpoint verification (daemon/audit/verification.ts). */
  verification: AuditVerification;
  /** Open live feeds; the owner can end them all at shutdown. Default: a registry of this module's own. */
  streams?: AuditStreams;
  heartbeatMs?: number;
}

/**
 * The open `/v1/admin/audit/stream` responses. A stream is never idle, so an
 * HTTP server's close() would wait for it until its deadline: each stream
 * ends by itself once its server stops listening, and `closeAll()` ends them
 * at once for an owner that wants to do it before closing the server.
 */
export class AuditStreams {
  private readonly open = new Set<() => void>();

  /** Ends every open stream (each client sees a clean end of the response). */
  closeAll(): void {
    for (const end of [...this.open]) end();
  }

  get size(): number {
    return this.open.size;
  }

  /** @internal */
  track(end: () => void): () => void {
    this.open.add(end);
    return () => this.open.delete(end);
  }
}

/** The entries the caller may read (daemon/policies): every entry for platform admins, the tenant's for tenant admins. */
function reachOf(ctx: AppContext): Reach {
  return reachFor(principalOf(ctx), 'admin');
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

function timeParam(ctx: AppContext, field: 'since' | 'until'): number | undefined {
  const raw = str(ctx.query[field]);
  if (raw === undefined) return undefined;
  const ms = /^\d{1,15}$/.test(raw) ? Number(raw) : Date.parse(raw);
  if (!Number.isSafeInteger(ms)) {
    throw new GatewayError('INVALID_FIELD', `query: ${field} must be an ISO 8601 time`, {
      details: [{ field, message: 'must be an ISO 8601 time' }],
    });
  }
  return ms;
}

/** The filters of the query string (already checked against the route's query schema). */
function filtersOf(ctx: AppContext): AuditFilters {
  const q = ctx.query;
  return {
    action: str(q.action) ?? null,
    actorId: str(q.actor_id) ?? null,
    userId: str(q.user_id) ?? null,
    tenantId: str(q.tenant_id) ?? null,
    outcome: (str(q.outcome) as AuditFilters['outcome']) ?? null,
    since: timeParam(ctx, 'since') ?? null,
    until: timeParam(ctx, 'until') ?? null,
  };
}

/** A malformed cursor or filter found by the domain layer answers 400 like a schema violation. */
async function asHttp<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof AuditQueryError) {
      throw new GatewayError('INVALID_FIELD', `query: ${err.field} ${err.message}`, {
        details: [{ field: err.field, message: err.message }],
      });
    }
    throw err;
  }
}

/** The audit log for administrators: query, live tail, verify, export. */
export function adminAuditRoutes(deps: AdminAuditDeps) {
  const { audit, query, verification } = deps;
  const streams = deps.streams ?? new AuditStreams();
  const heartbeatMs = deps.heartbeatMs ?? HEARTBEAT_MS;

  return defineRoutes([
    defineRoute({
      method: 'GET',
      path: '/v1/admin/audit',
      summary: 'Audit entries, newest first by default, cursor-paginated; tenant admins see their tenant only.',
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      query: 'AuditListQuery',
      response: { status: 200, schema: 'AuditListResponse' },
      errors: ['FORBIDDEN'],
      handler: async (ctx) => {
        const reach = reachOf(ctx);
        const page = await asHttp(() =>
          query.list(reach, filtersOf(ctx), {
            cursor: cursorOf(ctx),
            limit: limitOf(ctx, DEFAULT_PAGE_SIZE),
            order: ctx.query.order === 'asc' ? 'asc' : 'desc',
          }),
        );
        return { entries: page.entries.map(presentAuditEntry), next_cursor: page.nextCursor };
      },
    }),
    defineRoute({
      method: 'GET',
      path: '/v1/admin/audit/stream',
      summary:
        'Live feed as JSON Lines: each entry as it commits (from any daemon on the database), after `after_seq`; ' +
        'a `{"type":"heartbeat","after_seq":N}` line when it opens and every 15 s of quiet.',
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      query: 'AuditStreamQuery',
      response: {
        status: 200,
        contentType: NDJSON,
        description: 'JSON Lines: AuditEntry objects and heartbeat lines',
        headers: {
          'X-Accel-Buffering': {
            description: 'Tells nginx-style proxies not to buffer the feed.',
            required: true,
            schema: { type: 'string', enum: ['no'] },
          },
        },
      },
      errors: ['FORBIDDEN'],
      handler: async (ctx) => {
        const reach = reachOf(ctx);
        const filters = filtersOf(ctx);
        const afterSeq =
          str(ctx.query.after_seq) !== undefined ? Number(ctx.query.after_seq) : (await audit.head()).seq;
        const server = (ctx.req.socket as { server?: Server }).server;
        const out = new PassThrough();
        let last = afterSeq;
        let lastWrite = Date.now();
        const write = (line: string) => {
          lastWrite = Date.now();
          out.write(line);
        };
        const heartbeat = () => write(`${JSON.stringify({ type: 'heartbeat', after_seq: last })}\n`);
        const unsubscribe = audit.subscribe(
          (entry: AuditRecord) => {
            last = entry.seq;
            write(toJsonLine(entry));
          },
          { reach, filters, afterSeq },
        );
        let ended = false;
        const end = () => {
          if (ended) return;
          ended = true;
          clearInterval(timer);
          unsubscribe();
          untrack();
          out.end();
        };
        const untrack = streams.track(end);
        const timer = setInterval(
          () => {
            // The daemon is shutting down: end the response so server.close() is not held until its deadline.
            if (server && !server.listening) return end();
            if (Date.now() - lastWrite >= heartbeatMs) heartbeat();
          },
          Math.min(SHUTDOWN_CHECK_MS, heartbeatMs),
        );
        timer.unref();
        // Koa destroys the body stream when the client goes away; the response's close covers the rest.
        // (Not the request's close: it fires as soon as a GET's empty body has been read.)
        out.once('close', end);
        ctx.res.once('close', end);
        ctx.set('Cache-Control', 'no-store');
        ctx.set('X-Accel-Buffering', 'no');
        ctx.type = NDJSON;
        ctx.body = out;
        // The first line sends the headers at once and tells the client where the feed starts.
        heartbeat();
      },
    }),
    defineRoute({
      method: 'POST',
      path: '/v1/admin/audit/verify',
      summary: 'Recompute the hash chain and check the signed checkpoints (platform admins).',
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'platform_admin',
      response: { status: 200, schema: 'AuditVerifyResponse' },
      errors: ['FORBIDDEN'],
      handler: () => verification.run(),
    }),
    defineRoute({
      method: 'GET',
      path: '/v1/admin/audit/export',
      summary: 'Entries as JSON Lines, oldest first, streamed page by page; tenant admins get their tenant only.',
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      query: 'AuditExportQuery',
      response: { status: 200, contentType: NDJSON, description: 'JSON Lines of AuditEntry' },
      errors: ['FORBIDDEN'],
      handler: async (ctx) => {
        const lines = query.exportJsonLines(reachOf(ctx), filtersOf(ctx));
        // Read the first page before answering, so a bad filter is a 400, not a cut stream.
        const first = await asHttp(() => lines.next());
        async function* all(): AsyncGenerator<string> {
          if (first.done) return;
          yield first.value;
          yield* lines;
        }
        ctx.set('Cache-Control', 'no-store');
        ctx.type = NDJSON;
        ctx.body = Readable.from(all(), { objectMode: false });
      },
    }),
  ]);
}
