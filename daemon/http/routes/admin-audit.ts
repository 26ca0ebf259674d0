import type { DatabaseAuditLogger } from '../../audit/store.js';
import type { ResolvedConfig } from '../../config/load.js';
import type { Database } from '../../storage/database.js';
import { defineRoutes } from '../routes.js';

/** The audit log for administrators: query, live tail, verify, export. */
export function adminAuditRoutes(deps: { audit: DatabaseAuditLogger; database: Database; config: ResolvedConfig }) {
  void deps;
  return defineRoutes([]);
}
