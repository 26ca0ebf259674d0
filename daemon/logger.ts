import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/**
 * Paths pino blanks out wherever they appear in a log object. Request logs carry
 * only method, route, path (never the query string) and status, so these are a
 * second line of defence for anything a caller passes in by mistake.
 */
export const REDACT_PATHS = [
  'authorization',
  'password',
  'new_password',
  'token',
  'access_token',
  'refresh_token',
  'mfa_token',
  'api_key',
  'apiKey',
  'key',
  'secret',
  'ticket',
  'recovery_code',
  'recovery_codes',
  'jwt_secret',
  '*.authorization',
  '*.password',
  '*.token',
  '*.access_token',
  '*.refresh_token',
  '*.mfa_token',
  '*.api_key',
  '*.key',
  '*.secret',
  '*.ticket',
  '*.recovery_codes',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'headers.cookie',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'keen-gateway' },
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
