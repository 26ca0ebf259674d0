import { IN_CI, TEST_POSTGRES_URL, TEST_REDIS_URL } from './env.js';

export type StorageBackend = 'sqlite' | 'postgres';
export type SharedBackend = 'memory' | 'redis';

const skipped = new Set<string>();

/** Printed once at the end of the run, so a skipped backend is never silent. */
export function skippedBackends(): string[] {
  return [...skipped];
}

function unavailable(kind: string, variable: string, title: string): void {
  if (IN_CI) {
    describe(`${title} [${kind}]`, () => {
      it(`needs ${variable}: under CI=true a skipped ${kind} suite is a failure`, () => {
        throw new Error(`${variable} is not set; .ci/run must start ${kind} and export it`);
      });
    });
    return;
  }
  skipped.add(`${kind} (${variable} not set)`);
  describe.skip(`${title} [${kind}] SKIPPED: ${variable} not set`, () => {
    it('skipped', () => undefined);
  });
}

/**
 * Declares a suite once and runs it on SQLite and on Postgres. The Postgres copy
 * runs when KEEN_TEST_POSTGRES_URL is set; otherwise it is reported as skipped
 * (and under CI=true it fails instead).
 */
export function describeStorage(title: string, body: (backend: StorageBackend) => void): void {
  describe(`${title} [sqlite]`, () => body('sqlite'));
  if (TEST_POSTGRES_URL) describe(`${title} [postgres]`, () => body('postgres'));
  else unavailable('postgres', 'KEEN_TEST_POSTGRES_URL', title);
}

/** The same for what limits and the stream share: in-process and Redis. */
export function describeShared(title: string, body: (backend: SharedBackend) => void): void {
  describe(`${title} [memory]`, () => body('memory'));
  if (TEST_REDIS_URL) describe(`${title} [redis]`, () => body('redis'));
  else unavailable('redis', 'KEEN_TEST_REDIS_URL', title);
}
