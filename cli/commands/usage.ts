import { Command, Option } from 'commander';
import { GROUP_COLUMNS, usageCsv, type UsageJson } from '../../daemon/cli-shared.js';
import { clientFor, globals } from '../core/context.js';
import { CliError, table } from '../core/output.js';

const GROUPS = ['day', 'key', 'user', 'tenant'] as const;
/** The bar's width when stdout is not a terminal (or one too narrow to measure). */
export const DEFAULT_BAR_WIDTH = 30;
const MIN_BAR = 10;
const MAX_BAR = 60;
const EIGHTHS = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];

/**
 * A horizontal bar of `value / max` of `width` characters, in eighths of a
 * block; any value above 0 shows at least a sliver.
 */
export function bar(value: number, max: number, width: number): string {
  if (!(max > 0) || !(value > 0)) return '';
  const eighths = Math.max(1, Math.round((Math.min(value, max) / max) * width * 8));
  return '█'.repeat(Math.floor(eighths / 8)) + EIGHTHS[eighths % 8];
}

/** `--since` / `--until`: passed to the daemon as given; only the obviously malformed is refused here. */
function parseTime(option: string) {
  return (value: string): string => {
    if (!/^(\d{1,5}[dh]|\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:?\d{2})?)?)$/.test(value)) {
      throw new CliError(
        `${option}: expected an age like 30d or 24h, a date (2026-11-01) or an ISO 8601 date-time, got "${value}"`,
        2,
      );
    }
    return value;
  };
}

/** Human columns of a report: the group's, then the figures that matter most. */
function columnsOf(by: (typeof GROUPS)[number]): string[] {
  const group = by === 'key' ? ['api_key_id', 'api_key_name'] : [...GROUP_COLUMNS[by]];
  return [...group, 'charged', 'refunded', 'adjusted', 'granted', 'net', 'sessions', 'input_tokens', 'output_tokens'];
}

/** The report as an aligned table with a bar per row (scaled to the largest `charged`) and a TOTAL line. */
export function usageTable(r: UsageJson, terminalColumns: number | undefined): string {
  const columns = columnsOf(r.group_by);
  const first = columns[0]!;
  const rows: Array<Record<string, unknown>> = [...r.rows, { [first]: 'TOTAL', ...r.totals }];
  const plain = table(rows, columns);
  const width = Math.max(0, ...plain.split('\n').map((l) => l.length));
  const barWidth =
    terminalColumns && terminalColumns > 0
      ? Math.max(MIN_BAR, Math.min(MAX_BAR, terminalColumns - width - 2))
      : DEFAULT_BAR_WIDTH;
  const max = Math.max(0, ...r.rows.map((x) => Number(x.charged)));
  const withBars = rows.map((x, i) => ({
    ...x,
    charged_bar: i < r.rows.length ? bar(Number(x.charged), max, barWidth) : '',
  }));
  return table(withBars, [...columns, 'charged_bar']);
}

/** `keen-admin usage ...` */
export function usageCommand(): Command {
  return new Command('usage')
    .description(
      'usage over a time range per day, API key, user or tenant: credits charged, refunded, adjusted, granted; sessions and tokens',
    )
    .addOption(new Option('--by <group>', 'one row per day, key, user or tenant').choices([...GROUPS]).default('day'))
    .option(
      '--since <time>',
      'start, inclusive: an age (30d, 24h), a date or an ISO 8601 date-time',
      parseTime('--since'),
      '30d',
    )
    .option('--until <time>', 'end, exclusive (default: now)', parseTime('--until'))
    .option('--user <user>', 'only this user (id or email)')
    .option('--tenant <tenant>', 'only this tenant (id)')
    .option('--key <key>', 'only this API key (id)')
    .option('--time-zone <zone>', "IANA time zone days are cut in (default: the daemon's credits.budget_time_zone)")
    .option('--csv', 'print the CSV (a header row, then one line per row)')
    .addHelpText(
      'after',
      '\nThe bar after each row is its credits charged, scaled to the largest row.\n' +
        '\nExample:\n  keen-admin usage --by day --since 30d\n  keen-admin usage --by user --since 2026-11-01 --until 2026-12-01 --csv > november.csv',
    )
    .action(async (opts, cmd: Command) => {
      const g = globals(cmd);
      if (opts.csv && g.json) throw new CliError('--csv and --json: choose one', 2);
      const r = (await clientFor(cmd).usage.admin({
        group_by: opts.by,
        since: opts.since,
        until: opts.until,
        user_id: opts.user,
        tenant_id: opts.tenant,
        api_key_id: opts.key,
        time_zone: opts.timeZone,
      })) as unknown as UsageJson;
      if (g.json) process.stdout.write(JSON.stringify(r) + '\n');
      else if (opts.csv) process.stdout.write(usageCsv(r));
      else {
        process.stdout.write(usageTable(r, process.stdout.isTTY ? process.stdout.columns : undefined));
        process.stderr.write(`${r.since} to ${r.until} (${r.time_zone}); credits charged per row\n`);
      }
    });
}
