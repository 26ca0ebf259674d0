import { Command } from 'commander';

/** `keen-admin credits ...` */
export function creditsCommand(): Command {
  return new Command('credits').description('credits (not available yet)');
}
