/**
 * A usage report as the API answers it (docs/API.md, "GET /v1/usage"): JSON
 * with decimal credits, or CSV with the same columns. No storage imports: the
 * operator CLI renders `--csv` with the same code from the JSON it received.
 */
import type { UsageRow } from '../../schemas/types.gen.js';
import type { UsageGroup, UsageReport, UsageSums } from './usage.js';
import { formatCredits } from './money.js';

/** The columns that name a row's group, per grouping. */
export const GROUP_COLUMNS: Record<UsageGroup, readonly string[]> = {
  day: ['day'],
  key: ['api_key_id', 'api_key_name'],
  user: ['user_id', 'email'],
  tenant: ['tenant_id', 'tenant_name'],
};

/** The figures of every row and of `totals`, in order. */
export const SUM_COLUMNS = [
  'charged',
  'refunded',
  'adjusted',
  'granted',
  'net',
  'sessions',
  'input_tokens',
  'output_tokens',
  'web_searches',
] as const;

export type UsageJsonRow = Record<string, string | number | null>;

/** The report's payload; the HTTP edge adds the envelope's `success: true`. */
export interface UsageReportJson {
  group_by: UsageGroup;
  since: string;
  until: string;
  time_zone: string;
  rows: UsageRow[];
  totals: Record<(typeof SUM_COLUMNS)[number], number>;
}

/** The report as it arrives on the wire (what the CLI reads, a row's columns by name). */
export interface UsageJson extends Omit<UsageReportJson, 'rows'> {
  success: true;
  rows: UsageJsonRow[];
}

function sums(s: UsageSums): Record<(typeof SUM_COLUMNS)[number], number> {
  return {
    charged: formatCredits(s.charged),
    refunded: formatCredits(s.refunded),
    adjusted: formatCredits(s.adjusted),
    granted: formatCredits(s.granted),
    net: formatCredits(s.charged - s.refunded),
    sessions: s.sessions,
    input_tokens: s.inputTokens,
    output_tokens: s.outputTokens,
    web_searches: s.webSearches,
  };
}

export function presentUsage(r: UsageReport): UsageReportJson {
  const [idCol, labelCol] = GROUP_COLUMNS[r.groupBy];
  return {
    group_by: r.groupBy,
    since: new Date(r.since).toISOString(),
    until: new Date(r.until).toISOString(),
    time_zone: r.timeZone,
    // The group's columns (GROUP_COLUMNS) are the optional ones of UsageRow.
    rows: r.rows.map(
      (row) => ({ [idCol!]: row.group, ...(labelCol ? { [labelCol]: row.label } : {}), ...sums(row) }) as UsageRow,
    ),
    totals: sums(r.totals),
  };
}

/**
 * One CSV field (RFC 4180 quoting). A text cell starting with `=`, `+`, `-`, `@`,
 * tab or CR gets a leading `'` so a spreadsheet never runs it as a formula
 * (names and emails are user input); numbers are written as they are.
 */
function field(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') return String(v);
  let s = String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The report as CSV: a header row, then one line per row (no totals line), each ending in `\n`. */
export function usageCsv(r: { group_by: UsageGroup; rows: ReadonlyArray<UsageRow | UsageJsonRow> }): string {
  const columns = [...GROUP_COLUMNS[r.group_by], ...SUM_COLUMNS];
  const cell = (row: UsageRow | UsageJsonRow, c: string): unknown => (row as UsageJsonRow)[c];
  const lines = [columns.join(','), ...r.rows.map((row) => columns.map((c) => field(cell(row, c))).join(','))];
  return lines.join('\n') + '\n';
}
