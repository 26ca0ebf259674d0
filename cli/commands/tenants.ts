import { Command } from 'commander';
import { clientFor, globals } from '../core/context.js';
import { printResult } from '../core/output.js';

/** `keen-admin tenants ...` */
export function tenantsCommand(): Command {
  const tenants = new Command('tenants').description('create and list tenants');
  tenants
    .command('create <name>')
    .description('create a tenant (platform admins)')
    .addHelpText('after', '\nExample:\n  keen-admin tenants create "Acme Corp"')
    .action(async (name: string, _opts, cmd: Command) => {
      const r = await clientFor(cmd).request<{ tenant: Record<string, unknown> }>('POST', '/v1/admin/tenants', { body: { name } });
      printResult(globals(cmd), r, [r.tenant], ['id', 'name', 'created_at']);
    });
  tenants
    .command('list')
    .description('list tenants')
    .addHelpText('after', '\nExample:\n  keen-admin tenants list --json')
    .action(async (_opts, cmd: Command) => {
      const r = await clientFor(cmd).request<{ tenants: Array<Record<string, unknown>> }>('GET', '/v1/admin/tenants', { query: { limit: 200 } });
      printResult(globals(cmd), r, r.tenants, ['id', 'name', 'created_at']);
    });
  return tenants;
}
