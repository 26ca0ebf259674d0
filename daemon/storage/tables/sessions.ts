/** Agent sessions and their events (migration 0005_sessions). */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface SessionTables {}
