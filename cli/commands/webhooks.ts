import { Command, Option } from 'commander';
import type { WebhookDelivery, WebhookDeliveryListParams, WebhookEndpoint } from '../../sdk/src/index.js';
import { clientFor, globals } from '../core/context.js';
import { CliError, printResult } from '../core/output.js';

export const ENDPOINT_COLUMNS = ['id', 'user_id', 'url', 'event_types', 'enabled', 'disabled_reason', 'failing_since'];
export const DELIVERY_COLUMNS = [
  'id',
  'event_type',
  'status',
  'attempts',
  'last_status_code',
  'last_error',
  'created_at',
  'delivered_at',
];
const STATUSES = ['pending', 'delivering', 'delivered', 'failed'];

function limitOf(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 100) throw new CliError(`--limit must be 1 to 100 (got "${value}")`, 2);
  return n;
}

const rowsOf = (items: WebhookEndpoint[] | WebhookDelivery[]): Array<Record<string, unknown>> =>
  items as unknown as Array<Record<string, unknown>>;

/** `keen-admin webhooks ...`: registered webhook endpoints and their deliveries. */
export function webhooksCommand(): Command {
  const webhooks = new Command('webhooks').description(
    'registered webhook endpoints: list them, read their delivery log, resend, ping',
  );
  webhooks
    .command('list')
    .description(
      'every webhook endpoint in your reach (tenant admins: their tenant), failing and disabled ones included',
    )
    .option('--user <user>', "only this user's endpoints (id or email)")
    .addHelpText('after', '\nExample:\n  keen-admin webhooks list --user usr_01HV3K8Q2X')
    .action(async (opts: { user?: string }, cmd: Command) => {
      const client = clientFor(cmd);
      const endpoints: WebhookEndpoint[] = [];
      let cursor: string | null = null;
      do {
        const page = await client.webhooks.adminList({
          limit: 100,
          ...(opts.user ? { user_id: opts.user } : {}),
          ...(cursor ? { cursor } : {}),
        });
        endpoints.push(...page.endpoints);
        cursor = page.next_cursor;
      } while (cursor);
      printResult(globals(cmd), { success: true, endpoints, next_cursor: null }, rowsOf(endpoints), ENDPOINT_COLUMNS);
    });
  webhooks
    .command('deliveries')
    .description('the latest deliveries of an endpoint, newest first, with their last status code and error')
    .argument('<endpoint_id>', 'the endpoint (wep_...)')
    .addOption(new Option('--status <status>', 'only these').choices(STATUSES))
    .option('--limit <n>', 'how many (1-100)', '20')
    .addHelpText(
      'after',
      '\nExample:\n  keen-admin webhooks deliveries wep_01HV3K8Q2X --status failed --limit 50\n  (--json prints every attempt of each delivery, and its payload)',
    )
    .action(async (endpointId: string, opts: { status?: string; limit: string }, cmd: Command) => {
      const limit = limitOf(opts.limit);
      const r = await clientFor(cmd).webhooks.deliveries(endpointId, {
        limit,
        ...(opts.status ? { status: opts.status as WebhookDeliveryListParams['status'] } : {}),
      });
      printResult(globals(cmd), r, rowsOf(r.deliveries), DELIVERY_COLUMNS);
    });
  webhooks
    .command('resend')
    .description('send a delivery again, with the same message id (webhook-id): receivers that saw it can drop it')
    .argument('<endpoint_id>', 'the endpoint (wep_...)')
    .argument('<delivery_id>', 'the delivery (whk_...)')
    .addHelpText('after', '\nExample:\n  keen-admin webhooks resend wep_01HV3K8Q2X whk_01HV3M4N7P')
    .action(async (endpointId: string, deliveryId: string, _opts, cmd: Command) => {
      const delivery = await clientFor(cmd).webhooks.resend(endpointId, deliveryId);
      printResult(globals(cmd), { success: true, delivery }, rowsOf([delivery]), DELIVERY_COLUMNS);
    });
  webhooks
    .command('ping')
    .description('send a ping event to an endpoint (queued: follow it with webhooks deliveries)')
    .argument('<endpoint_id>', 'the endpoint (wep_...)')
    .addHelpText('after', '\nExample:\n  keen-admin webhooks ping wep_01HV3K8Q2X')
    .action(async (endpointId: string, _opts, cmd: Command) => {
      const delivery = await clientFor(cmd).webhooks.ping(endpointId);
      printResult(globals(cmd), { success: true, delivery }, rowsOf([delivery]), DELIVERY_COLUMNS);
    });
  return webhooks;
}
