import type { Migration } from 'kysely';
import * as m0001 from './0001_foundation.js';
import * as m0002 from './0002_auth.js';
import * as m0003 from './0003_credits.js';
import * as m0004 from './0004_audit.js';
import * as m0005 from './0005_sessions.js';
import * as m0006 from './0006_webhooks.js';
import * as m0007 from './0007_agent_sandbox.js';
import * as m0008 from './0008_session_fencing.js';
import * as m0009 from './0009_suspended_by.js';
import * as m0010 from './0010_tenant_credit_pools.js';
import * as m0011 from './0011_spend_control.js';
import * as m0012 from './0012_key_lifecycle.js';
import * as m0013 from './0013_webhook_endpoints.js';
import * as m0014 from './0014_audit_actor_time.js';

/**
 * Every migration, in order. Names never change once released; a new migration
 * is a new entry. They use Kysely's schema builder only, so their effect is the
 * same on SQLite and Postgres.
 */
export const MIGRATIONS: Record<string, Migration> = {
  '0001_foundation': m0001,
  '0002_auth': m0002,
  '0003_credits': m0003,
  '0004_audit': m0004,
  '0005_sessions': m0005,
  '0006_webhooks': m0006,
  '0007_agent_sandbox': m0007,
  '0008_session_fencing': m0008,
  '0009_suspended_by': m0009,
  '0010_tenant_credit_pools': m0010,
  '0011_spend_control': m0011,
  '0012_key_lifecycle': m0012,
  '0013_webhook_endpoints': m0013,
  '0014_audit_actor_time': m0014,
};
