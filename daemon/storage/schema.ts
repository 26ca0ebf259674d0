/**
 * Kysely table types: the shape of every table as the code sees it, one file per
 * domain under tables/. Times are integer milliseconds since the epoch, money is
 * integer micro-credits, booleans are 0/1 integers, JSON is text: the same on
 * SQLite and Postgres.
 */
import type { AuditTables } from './tables/audit.js';
import type { AuthTables } from './tables/auth.js';
import type { CreditTables } from './tables/credits.js';
import type { FoundationTables } from './tables/foundation.js';
import type { SessionTables } from './tables/sessions.js';
import type { WebhookTables } from './tables/webhooks.js';

export interface DB extends FoundationTables, AuthTables, CreditTables, AuditTables, SessionTables, WebhookTables {}
