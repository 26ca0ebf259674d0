import { Redis } from 'ioredis';

/** The part of the daemon's pino logger this module uses (a fake is enough in tests). */
export interface RedisLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface CreateRedisOptions {
  /** Shown in `CLIENT LIST`; helps an operator tell the gateway's connections apart. */
  connectionName?: string;
  /** Give up connecting after this long and retry (default 2000 ms). */
  connectTimeoutMs?: number;
  /**
   * Reject a command that got no reply within this time (default 1000 ms), so a
   * stalled Redis fails requests fast instead of hanging them. Pass 0 to disable
   * it (a connection that runs blocking commands).
   */
  commandTimeoutMs?: number;
  /** Upper bound of the reconnect backoff (default 2000 ms). */
  maxReconnectDelayMs?: number;
}

/**
 * Reconnect delay for attempt `times` (1, 2, ...): linear growth capped at `maxMs`.
 * It never returns null, so ioredis keeps reconnecting forever and the daemon
 * recovers by itself when Redis comes back, without a restart.
 */
export function reconnectDelay(times: number, maxMs = 2000): number {
  return Math.min(Math.max(times, 1) * 100, maxMs);
}

/**
 * An ioredis client configured for a gateway that must answer quickly whether or
 * not Redis is up:
 * - no offline queue and one retry per request: while Redis is down a command
 *   fails at once (the caller applies its failure policy) instead of piling up;
 * - reconnects forever with capped backoff;
 * - connection errors are logged at warn (once per outage, not once per retry)
 *   and never crash the process (an 'error' event without a listener would).
 */
export function createRedis(url: string, logger: RedisLogger, options: CreateRedisOptions = {}): Redis {
  const maxDelay = options.maxReconnectDelayMs ?? 2000;
  const commandTimeout = options.commandTimeoutMs ?? 1000;
  const client = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: options.connectTimeoutMs ?? 2000,
    commandTimeout: commandTimeout > 0 ? commandTimeout : undefined,
    retryStrategy: (times) => reconnectDelay(times, maxDelay),
    connectionName: options.connectionName,
  });
  // Log the first error of an outage and the recovery; the retries in between
  // would repeat the same line every couple of seconds.
  let lastError: string | null = null;
  client.on('error', (err: Error) => {
    const message = describeError(err);
    if (message === lastError) return;
    lastError = message;
    logger.warn({ err: { message, name: err.name } }, 'redis connection error; retrying');
  });
  client.on('ready', () => {
    if (lastError !== null) logger.info({}, 'redis connection restored');
    lastError = null;
  });
  return client;
}

function describeError(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code ? `${code}: ${err.message}` : err.message;
}

const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
]);

const UNAVAILABLE_MESSAGES = [
  'Connection is closed',
  "Stream isn't writeable",
  'enableOfflineQueue options is false',
  'Reached the max retries per request limit',
  'Command timed out',
  'connect ETIMEDOUT',
  'LOADING', // Redis is starting and loading its dataset
  'READONLY', // failover in progress: we reached a replica
  'MASTERDOWN',
  'CLUSTERDOWN',
];

/**
 * True when `err` means "Redis cannot be reached right now" (as opposed to a bug
 * such as a wrong argument): the connection is closed or refused, the offline
 * queue is off and the stream is not writeable, ioredis gave up after
 * `maxRetriesPerRequest`, a command timed out, or Redis answers that it is
 * loading or read-only. Follows `cause` chains.
 */
export function isRedisUnavailableError(err: unknown): boolean {
  let e: unknown = err;
  for (let depth = 0; e instanceof Error && depth < 5; depth++) {
    if (e.name === 'MaxRetriesPerRequestError') return true;
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && UNAVAILABLE_CODES.has(code)) return true;
    const message = e.message;
    if (UNAVAILABLE_MESSAGES.some((m) => message.includes(m))) return true;
    // Connection failures surface as AggregateError when several addresses were tried.
    if (e instanceof AggregateError && e.errors.some((inner) => isRedisUnavailableError(inner))) return true;
    e = e.cause;
  }
  return false;
}
