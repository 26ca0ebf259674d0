/**
 * Kysely table types: the shape of every table as the code sees it. Times are
 * integer milliseconds since the epoch, money is integer micro-credits, booleans
 * are 0/1 integers, JSON is text: the same on SQLite and Postgres.
 */
import type { Generated } from 'kysely';

export interface MetaTable {
  key: string;
  value: string;
}

export interface DB {
  gateway_meta: MetaTable;
}

export type { Generated };
