/** Audit log tables (migration 0004_audit). */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface AuditTables {}
