import { skippedBackends } from './backends.js';

/** Mocha root hooks: say loudly, at the end, which backends did not run. */
export const mochaHooks = {
  afterAll(): void {
    const list = skippedBackends();
    if (list.length > 0) {
      const line = '!'.repeat(72);
      process.stderr.write(
        `\n${line}\n!! SKIPPED BACKENDS: ${list.join(', ')}\n!! Set the variables to run those suites (CI always does).\n${line}\n`,
      );
    }
  },
};
