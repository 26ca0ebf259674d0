/** What the test environment offers. CI exports both URLs (see .ci/run). */
export const TEST_POSTGRES_URL = process.env.KEEN_TEST_POSTGRES_URL || null;
export const TEST_REDIS_URL = process.env.KEEN_TEST_REDIS_URL || null;
export const IN_CI = process.env.CI === 'true';
