import { Command } from 'commander';

/** `keen-admin sessions ...` */
export function sessionsCommand(): Command {
  return new Command('sessions').description('sessions (not available yet)');
}
