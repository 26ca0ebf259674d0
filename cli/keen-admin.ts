#!/usr/bin/env node
/**
 * keen-admin: the operator's CLI (README.md, "Operating").
 * Exit codes: 0 success, 1 failed operation, 2 usage error, 3 daemon unreachable.
 */
import { CommanderError } from 'commander';
import { buildProgram } from './program.js';
import { exitCodeFor, printError } from './core/output.js';

const program = buildProgram();
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exit(
      err.code === 'commander.helpDisplayed' ||
        err.code === 'commander.version' ||
        err.code === 'commander.help' ||
        err.code === 'commander.executeSubCommandAsync'
        ? 0
        : 2,
    );
  }
  printError(err, program.opts<{ verbose?: boolean; json?: boolean }>());
  process.exit(exitCodeFor(err));
}
