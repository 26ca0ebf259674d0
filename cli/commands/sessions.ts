import { Command, Option } from 'commander';
import { clientFor, globals } from '../core/context.js';
import { printResult } from '../core/output.js';

const COLUMNS = ['id', 'user_id', 'status', 'current_phase', 'cost_so_far', 'credit_reserved', 'final_cost', 'created_at', 'ended_at'];
const STATUSES = ['running', 'completed', 'failed', 'cancelled', 'budget_exhausted', 'timed_out', 'interrupted'];

/** `keen-admin sessions ...` */
export function sessionsCommand(): Command {
  const sessions = new Command('sessions').description('list and cancel agent sessions');
  sessions
    .command('list')
    .description('sessions, newest first')
    .option('--user <user>', 'only this user\'s (id or email)')
    .addOption(new Option('--status <status>', 'only this status').choices(STATUSES))
    .option('--limit <n>', 'how many (1-100)', '50')
    .addHelpText('after', '\nExample:\n  keen-admin sessions list --status running')
    .action(async (opts, cmd: Command) => {
      const r = await clientFor(cmd).request<{ sessions: Array<Record<string, unknown>> }>('GET', '/v1/admin/sessions', {
        query: { user_id: opts.user, status: opts.status, limit: opts.limit },
      });
      printResult(globals(cmd), r, r.sessions, COLUMNS);
    });
  sessions
    .command('cancel <id>')
    .description('stop a session\'s agent; it is charged what it used and the rest is released')
    .addHelpText('after', '\nExample:\n  keen-admin sessions cancel ses_01j...')
    .action(async (id: string, _opts, cmd: Command) => {
      const r = await clientFor(cmd).request<{ session: Record<string, unknown> }>('POST', `/v1/admin/sessions/${encodeURIComponent(id)}/cancel`, { body: {} });
      printResult(globals(cmd), r, [r.session], COLUMNS);
    });
  return sessions;
}
