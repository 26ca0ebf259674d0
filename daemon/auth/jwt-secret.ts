import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync, statSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../config/errors.js';
import type { Logger } from '../logger.js';

export const MIN_SECRET_BYTES = 32;

/**
 * The rotated-out secrets still accepted (JWT_PREVIOUS_SECRETS): for verifying
 * tokens they signed, opening what was sealed under them and signing webhooks
 * with their derived secrets too, never for signing tokens. Held to the same
 * length rule as JWT_SECRET; the current secret among them is dropped.
 */
export function resolvePreviousSecrets(options: {
  provided: string[];
  current: Buffer;
  env: Env;
  logger: Logger;
}): Buffer[] {
  const out: Buffer[] = [];
  options.provided.forEach((value, i) => {
    const bytes = secretBytes(`JWT_PREVIOUS_SECRETS entry ${i + 1}`, value, options.env, options.logger);
    if (!bytes.equals(options.current) && !out.some((b) => b.equals(bytes))) out.push(bytes);
  });
  return out;
}

type Env = 'development' | 'production' | 'test';

/** A secret from the environment as bytes: shorter than MIN_SECRET_BYTES stops the daemon in production and is warned about elsewhere. */
function secretBytes(name: string, value: string, env: Env, logger: Logger): Buffer {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length < MIN_SECRET_BYTES) {
    if (env === 'production')
      throw new ConfigError([
        `${name}: must be at least ${MIN_SECRET_BYTES} bytes in production (got ${bytes.length})`,
      ]);
    logger.warn(`${name} is shorter than ${MIN_SECRET_BYTES} bytes; refuse this in production`);
  }
  return bytes;
}

/**
 * The HS256 signing secret (config.example.yaml). From JWT_SECRET when set; in
 * production a missing or short one stops the daemon. Otherwise it is generated
 * once into `<data_dir>/jwt-secret` with mode 0600 and reused on every start.
 */
export function resolveJwtSecret(options: {
  provided: string | null;
  env: Env;
  dataDir: string;
  logger: Logger;
}): Buffer {
  const { provided, env, dataDir, logger } = options;
  if (provided !== null) return secretBytes('JWT_SECRET', provided, env, logger);
  if (env === 'production') {
    throw new ConfigError(['JWT_SECRET: is required when KEEN_ENV=production']);
  }
  const file = path.join(dataDir, 'jwt-secret');
  if (existsSync(file)) {
    const mode = statSync(file).mode & 0o777;
    if (mode & 0o077) {
      chmodSync(file, 0o600);
      logger.warn({ file }, 'jwt-secret was readable by others; mode reset to 0600');
    }
    const secret = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64url');
    if (secret.length >= MIN_SECRET_BYTES) return secret;
    throw new ConfigError([
      `${file}: holds a secret shorter than ${MIN_SECRET_BYTES} bytes; delete it to generate a new one`,
    ]);
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const secret = randomBytes(48);
  writeFileSync(file, secret.toString('base64url') + '\n', { mode: 0o600, flag: 'wx' });
  logger.warn(
    { file },
    'JWT_SECRET is not set: generated a signing secret into the data directory (set JWT_SECRET in production)',
  );
  return secret;
}
