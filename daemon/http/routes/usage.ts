import { DateTime } from 'luxon';
import type { AuditLogger } from '../../audit/types.js';
import type { Clock } from '../../clock.js';
import {
  DAY_MS,
  DEFAULT_RANGE_DAYS,
  MAX_RANGE_DAYS,
  isTimeZone,
  type UsageGroup,
  type UsageQuery,
  type UsageReports,
} from '../../credits/usage.js';
import { presentUsage, usageCsv } from '../../credits/usage-present.js';
import { invalidField, notFound } from '../../errors.js';
import { reachFor, type Reach } from '../../policies/index.js';
import type { UserAdminService } from '../../users/user-admin.js';
import type { AppContext } from '../context.js';
import { clientOf, principalOf } from '../middleware/authenticate.js';
import { defineRoute, defineRoutes, RAW } from '../routes.js';
import { tenantProbe } from '../tenant-probe.js';

const CSV = 'text/csv; charset=utf-8';

/** What a CSV answer adds (declared in /openapi.json). */
const CSV_HEADERS = {
  'Content-Disposition': {
    description: 'CSV answers only: `attachment; filename="usage-<group_by>.csv"`.',
    required: false,
    schema: { type: 'string', pattern: '^attachment; filename="usage-[a-z_]+\\.csv"$' },
  },
};

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

const refuse = (field: string, message: string) => invalidField(`query: ${field} ${message}`, [{ field, message }]);

const RELATIVE = /^(\d{1,5})([dh])$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?$/;

/**
 * `since` / `until`: a relative age (`30d`, `24h`: that long before now), a date
 * (`2026-11-01`: its midnight in the report's zone) or an ISO 8601 date-time
 * (`2026-11-01T09:00:00Z`; without an offset: in the report's zone).
 */
export function parseUsageTime(raw: string, field: 'since' | 'until', now: number, zone: string): number {
  const rel = RELATIVE.exec(raw);
  let ms: number | null = null;
  if (rel) ms = now - Number(rel[1]) * (rel[2] === 'd' ? DAY_MS : 3_600_000);
  else if (DATE.test(raw) || DATE_TIME.test(raw)) {
    const t = DateTime.fromISO(raw, { zone });
    if (t.isValid) ms = t.toMillis();
  }
  if (ms === null || !Number.isSafeInteger(ms) || ms < 0) {
    throw refuse(
      field,
      'must be an ISO 8601 date or date-time (2026-11-01, 2026-11-01T09:00:00Z) or an age like 30d or 24h',
    );
  }
  return ms;
}

export interface UsageParams {
  groupBy: UsageGroup;
  since: number;
  until: number;
  timeZone: string;
  csv: boolean;
}

/** The query string's range, zone, grouping and format (the route's schema already checked names and enums). */
export function usageParams(ctx: AppContext, now: number, defaultZone: string): UsageParams {
  const q = ctx.query;
  const timeZone = str(q.time_zone) ?? defaultZone;
  if (!isTimeZone(timeZone)) throw refuse('time_zone', 'must be an IANA time zone name (UTC, Europe/Berlin)');
  const untilRaw = str(q.until);
  const sinceRaw = str(q.since);
  const until = untilRaw === undefined ? now : parseUsageTime(untilRaw, 'until', now, timeZone);
  const since =
    sinceRaw === undefined ? until - DEFAULT_RANGE_DAYS * DAY_MS : parseUsageTime(sinceRaw, 'since', now, timeZone);
  if (!(since < until)) throw refuse('since', 'must be before until');
  if (until - since > MAX_RANGE_DAYS * DAY_MS)
    throw refuse('since', `the range must be at most ${MAX_RANGE_DAYS} days`);
  const format = str(q.format);
  const csv = format === 'csv' || (format === undefined && ctx.accepts('application/json', 'text/csv') === 'text/csv');
  return { groupBy: (str(q.group_by) as UsageGroup | undefined) ?? 'day', since, until, timeZone, csv };
}

export interface UsageRouteDeps {
  usage: UsageReports;
  users: UserAdminService;
  audit: AuditLogger;
  clock: Clock;
  /** Where days are cut unless the request names `time_zone` (credits.budget_time_zone). */
  timeZone: string;
}

/** Usage reports: the caller's own, and the administrators' over their reach. */
export function usageRoutes(deps: UsageRouteDeps) {
  const { usage, users, audit, clock } = deps;

  const answer = async (
    ctx: AppContext,
    params: UsageParams,
    query: Omit<UsageQuery, 'groupBy' | 'since' | 'until' | 'timeZone'>,
  ) => {
    const report = await usage.report({
      ...query,
      groupBy: params.groupBy,
      since: params.since,
      until: params.until,
      timeZone: params.timeZone,
    });
    const json = presentUsage(report);
    if (!params.csv) return json;
    ctx.type = CSV;
    ctx.set('Content-Disposition', `attachment; filename="usage-${params.groupBy}.csv"`);
    ctx.body = usageCsv(json);
    return RAW;
  };

  const probe = tenantProbe(audit);

  return defineRoutes([
    defineRoute({
      method: 'GET',
      path: '/v1/usage',
      summary:
        'Your usage over a time range (default the last 30 days), by day or API key: credits charged, refunded, adjusted and granted, sessions, tokens and web searches. CSV with `format=csv` or `Accept: text/csv`.',
      tag: 'credits',
      auth: 'any',
      scope: 'credits:read',
      query: 'UsageQuery',
      response: {
        status: 200,
        schema: 'UsageReportResponse',
        description: 'The report (JSON); `text/csv` with `format=csv` or `Accept: text/csv`',
        otherContentTypes: ['text/csv'],
        headers: CSV_HEADERS,
      },
      errors: ['INVALID_FIELD'],
      handler: async (ctx) => {
        const p = principalOf(ctx);
        const params = usageParams(ctx, clock.now(), deps.timeZone);
        return answer(ctx, params, { reach: reachFor(p, 'self'), apiKeyId: str(ctx.query.api_key_id) ?? null });
      },
    }),
    defineRoute({
      method: 'GET',
      path: '/v1/admin/usage',
      summary:
        'Usage over a time range by day, API key, user or tenant (platform admins: everything; tenant admins: their tenant), filtered by user, key or tenant. CSV with `format=csv` or `Accept: text/csv`.',
      tag: 'admin',
      auth: 'any',
      scope: 'admin',
      policy: 'administrator',
      query: 'UsageAdminQuery',
      response: {
        status: 200,
        schema: 'UsageReportResponse',
        description: 'The report (JSON); `text/csv` with `format=csv` or `Accept: text/csv`',
        otherContentTypes: ['text/csv'],
        headers: CSV_HEADERS,
      },
      errors: ['INVALID_FIELD', 'NOT_FOUND', 'FORBIDDEN'],
      handler: async (ctx) => {
        const p = principalOf(ctx);
        const reach: Reach = reachFor(p, 'admin');
        const params = usageParams(ctx, clock.now(), deps.timeZone);
        const tenantId = str(ctx.query.tenant_id) ?? null;
        if (tenantId !== null) {
          if ('tenantId' in reach && reach.tenantId !== tenantId) return probe(p, tenantId, clientOf(ctx));
          if (!(await usage.tenantExists(tenantId))) throw notFound('tenant');
        }
        const userRaw = str(ctx.query.user_id);
        const userId = userRaw === undefined ? null : (await users.findUser(p, userRaw, clientOf(ctx))).id;
        return answer(ctx, params, { reach, userId, tenantId, apiKeyId: str(ctx.query.api_key_id) ?? null });
      },
    }),
  ]);
}
