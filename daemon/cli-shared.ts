/**
 * The one daemon module keen-admin imports (biome.json's layer rule for cli/**): pure helpers the CLI
 * shares with the daemon so that both read the same config and parse, print and check values alike.
 * Nothing here opens the database or the data directory; cli/commands/init.ts, doctor.ts and backup.ts
 * take that from daemon/operator.ts.
 */
export { SCOPES } from './auth/principal.js';
export { ConfigError } from './config/errors.js';
export { loadConfig, redactUrl, type ResolvedConfig, secretList } from './config/load.js';
export { formatCredits, parseCredits } from './credits/money.js';
export { GROUP_COLUMNS, type UsageJson, usageCsv } from './credits/usage-present.js';
export { isIdempotencyKey } from './idempotency/key.js';
export { isId } from './ids.js';
export { VERSION } from './version.js';
