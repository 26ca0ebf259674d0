import { Command } from 'commander';

/** `keen-admin audit ...` */
export function auditCommand(): Command {
  return new Command('audit').description('audit (not available yet)');
}
