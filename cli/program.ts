import { Command } from 'commander';
import { VERSION } from '../daemon/version.js';

/** The command tree. Each command group lives in its own module under cli/commands/. */
export function buildProgram(): Command {
  const program = new Command('keen-admin')
    .description('keen-admin: operate a keen-gateway daemon (users, tenants, keys, credits, audit, sessions)')
    .version(VERSION)
    .option('--url <url>', 'daemon URL (env KEEN_URL)', process.env.KEEN_URL ?? 'http://127.0.0.1:8080')
    .option('--json', 'print one JSON document (JSON Lines when streaming)')
    .option('--verbose', 'print stack traces of errors')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', '\nConnection: --url / KEEN_URL, and the admin API key in KEEN_API_KEY.');
  return program;
}
