/**
 * Usage reports (docs/credits.md, "Usage"; GET /v1/usage and /v1/admin/usage):
 * what the ledger and the sessions say about a time range, summed per day, API
 * key, user or tenant. Everything is aggregated in SQL (GROUP BY) on SQLite and
 * Postgres alike; the sums are the ledger's own amounts, so a report over a
 * range adds up to exactly the balance changes of that range:
 *
 *   granted - charged + refunded + adjusted = sum(amount)  (reserve/release move 0)
 *
 * Days are cut in a time zone. In UTC the database buckets by day; elsewhere it
 * buckets by 15 minutes (every zone's offset is a multiple of 15 minutes) and
 * the buckets are folded into local days here, so no SQL needs zone data.
 */
import { DateTime, IANAZone } from 'luxon';
import type { Reach } from '../policies/index.js';
import type { UsageGrouping, UsageRepository } from '../storage/repos/usage.js';
import { toMicros, type Micros } from './money.js';

export type UsageGroup = 'day' | 'key' | 'user' | 'tenant';
export const USAGE_GROUPS: readonly UsageGroup[] = ['day', 'key', 'user', 'tenant'];

export const DAY_MS = 86_400_000;
/** The longest range one report covers. */
export const MAX_RANGE_DAYS = 366;
/** The range when `since` is not given: this many days before `until`. */
export const DEFAULT_RANGE_DAYS = 30;
/** The bucket of a report in a zone other than UTC. */
const QUARTER_MS = 900_000;
/** How many ids one label lookup names at most. */
const LOOKUP_CHUNK = 500;

export interface UsageQuery {
  /** Which rows the caller may see (daemon/policies): applied to both tables. */
  reach: Reach;
  groupBy: UsageGroup;
  /** Epoch ms, inclusive. */
  since: number;
  /** Epoch ms, exclusive. */
  until: number;
  /** IANA zone the `day` groups are cut in. */
  timeZone: string;
  userId?: string | null;
  apiKeyId?: string | null;
  tenantId?: string | null;
}

export interface UsageSums {
  /** -sum(amount) of `charge` entries. */
  charged: Micros;
  /** sum(amount) of `refund` entries. */
  refunded: Micros;
  /** sum(amount) of `adjustment` entries, signed. */
  adjusted: Micros;
  /** sum(amount) of `grant` entries. */
  granted: Micros;
  /** Sessions created in the range. */
  sessions: number;
  inputTokens: number;
  outputTokens: number;
  webSearches: number;
}

export interface UsageRow extends UsageSums {
  /** The group: `YYYY-MM-DD` (day), or the key, user or tenant id; null for entries without one (no key, no tenant). */
  group: string | null;
  /** The key's name, the user's email, the tenant's name; null for days and unknown ids. */
  label: string | null;
}

export interface UsageReport {
  groupBy: UsageGroup;
  since: number;
  until: number;
  timeZone: string;
  rows: UsageRow[];
  totals: UsageSums;
}

const empty = (): UsageSums => ({
  charged: 0 as Micros,
  refunded: 0 as Micros,
  adjusted: 0 as Micros,
  granted: 0 as Micros,
  sessions: 0,
  inputTokens: 0,
  outputTokens: 0,
  webSearches: 0,
});

/** A bigint sum as the driver returns it (a string on Postgres, a number on SQLite) as an integer. */
function int(value: unknown, what: string): number {
  const n = typeof value === 'number' ? value : typeof value === 'bigint' ? Number(value) : Number(String(value ?? 0));
  if (!Number.isSafeInteger(n)) throw new RangeError(`usage: ${what} is not a safe integer: ${String(value)}`);
  return n;
}

/** Whether `zone` is an IANA time zone name luxon knows. */
export function isTimeZone(zone: string): boolean {
  return zone.length > 0 && zone.length <= 64 && IANAZone.isValidZone(zone);
}

const isUtc = (zone: string): boolean => {
  const z = IANAZone.create(zone);
  return (
    z.isValid &&
    ['UTC', 'Etc/UTC', 'Etc/GMT', 'GMT', 'Etc/Universal', 'Universal', 'Etc/Zulu', 'Zulu', 'Etc/UCT', 'UCT'].includes(
      z.name,
    )
  );
};

/** The local day (`YYYY-MM-DD`) of `ms` in `zone`. */
export function dayOf(ms: number, zone: string): string {
  return DateTime.fromMillis(ms, { zone }).toISODate()!;
}

export class UsageReports {
  constructor(private readonly repository: UsageRepository) {}

  /** Whether a tenant exists (an admin's `tenant_id` filter). */
  tenantExists(tenantId: string): Promise<boolean> {
    return this.repository.tenantExists(tenantId);
  }

  async report(q: UsageQuery): Promise<UsageReport> {
    if (!(q.since < q.until)) throw new RangeError('usage: since must be before until');
    const utc = isUtc(q.timeZone);
    const bucketMs = utc ? DAY_MS : QUARTER_MS;
    const grouping: UsageGrouping = q.groupBy === 'day' ? { by: 'day', bucketMs } : { by: q.groupBy };
    const groupKey = (raw: unknown): string | null => {
      if (raw === null || raw === undefined) return null;
      if (q.groupBy === 'day') return dayOf(int(raw, 'bucket') * bucketMs, q.timeZone);
      return String(raw);
    };

    const ledgerRows = await this.repository.ledgerSums(q, grouping);
    const sessionRows = await this.repository.sessionSums(q, grouping);

    // Fold the buckets into groups (several 15-minute buckets make one local day).
    const groups = new Map<string | null, UsageSums>();
    const at = (raw: unknown): UsageSums => {
      const key = groupKey(raw);
      let s = groups.get(key);
      if (!s) groups.set(key, (s = empty()));
      return s;
    };
    const add = (a: Micros, b: number, what: string): Micros => toMicros(a + int(b, what), what);
    for (const r of ledgerRows) {
      const s = at(r.g);
      s.charged = toMicros(s.charged - int(r.charge, 'charged'), 'charged');
      s.refunded = add(s.refunded, r.refund as number, 'refunded');
      s.adjusted = add(s.adjusted, r.adjustment as number, 'adjusted');
      s.granted = add(s.granted, r.grant as number, 'granted');
    }
    for (const r of sessionRows) {
      const s = at(r.g);
      s.sessions += int(r.n, 'sessions');
      s.inputTokens += int(r.input_tokens, 'input_tokens');
      s.outputTokens += int(r.output_tokens, 'output_tokens');
      s.webSearches += int(r.web_searches, 'web_searches');
    }

    const labels = await this.labels(
      q.groupBy,
      [...groups.keys()].filter((k): k is string => k !== null),
    );
    const rows: UsageRow[] = [...groups].map(([group, sums]) => ({
      group,
      label: group === null ? null : (labels.get(group) ?? null),
      ...sums,
    }));
    if (q.groupBy === 'day') rows.sort((a, b) => String(a.group).localeCompare(String(b.group)));
    else {
      // Largest spender first; ties by id; the row without an id last.
      rows.sort(
        (a, b) =>
          (a.group === null ? 1 : 0) - (b.group === null ? 1 : 0) ||
          b.charged - a.charged ||
          String(a.group).localeCompare(String(b.group)),
      );
    }
    const totals = empty();
    for (const r of rows) {
      totals.charged = toMicros(totals.charged + r.charged, 'charged');
      totals.refunded = toMicros(totals.refunded + r.refunded, 'refunded');
      totals.adjusted = toMicros(totals.adjusted + r.adjusted, 'adjusted');
      totals.granted = toMicros(totals.granted + r.granted, 'granted');
      totals.sessions += r.sessions;
      totals.inputTokens += r.inputTokens;
      totals.outputTokens += r.outputTokens;
      totals.webSearches += r.webSearches;
    }
    return { groupBy: q.groupBy, since: q.since, until: q.until, timeZone: q.timeZone, rows, totals };
  }

  /** Names of the groups: key names, user emails, tenant names. */
  private async labels(groupBy: UsageGroup, ids: string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    if (groupBy === 'day' || ids.length === 0) return out;
    for (let i = 0; i < ids.length; i += LOOKUP_CHUNK) {
      const rows = await this.repository.labels(groupBy, ids.slice(i, i + LOOKUP_CHUNK));
      for (const r of rows) out.set(r.id, r.label);
    }
    return out;
  }
}
