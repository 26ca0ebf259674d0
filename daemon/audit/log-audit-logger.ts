import type { Logger } from '../logger.js';
import type { AuditEvent, AuditLogger } from './types.js';

/**
 * Writes audit events as structured log lines (`"audit": true`), through the
 * logger's redaction. Used until a durable store is configured; bounded, unlike
 * keeping events in memory.
 */
export class LogAuditLogger implements AuditLogger {
  private readonly log: Logger;
  constructor(logger: Logger) {
    this.log = logger.child({ audit: true });
  }
  async record(event: AuditEvent): Promise<void> {
    this.log.info({ event: { ...event, details: event.details ? Object.keys(event.details) : undefined } }, event.action);
  }
}
