import type { SqlBool } from 'kysely';
import type { Database, PreparedRead } from '../database.js';
import type { UserRow } from './users.js';

/** What authentication needs of a user: who, in which tenant, with which role, tier and status. */
export type AuthSubject = Pick<
  UserRow,
  'id' | 'tenant_id' | 'email' | 'role' | 'tier' | 'status' | 'tokens_not_before'
>;

/**
 * The user of an access token that names its sign-in (`sid`), with whether that
 * sign-in still stands: some token of the refresh-token family is not revoked
 * (logout, refresh-token reuse, logout-all, password change, MFA enabled from
 * another sign-in and suspension revoke them). Read in one query, so the check
 * costs no extra round trip. Not correlated with the user row (cheaper to plan
 * on Postgres): `sid` comes from a verified token, and a family is one user's.
 */
export interface SignedInSubject extends AuthSubject {
  sign_in_live: SqlBool;
}

/** An API key with its owner, read in one query. */
export interface ApiKeySubject extends Omit<AuthSubject, 'id' | 'tokens_not_before'> {
  key_id: string;
  user_id: string;
  scopes: string;
  rate_limit_per_hour: number;
  expires_at: number | null;
  revoked_at: number | null;
  last_used_at: number | null;
  /** The key's current secret: a row found by another hash was found by its previous secret. */
  key_hash: string;
  /** Until when the previous secret (kept after a roll) is accepted. */
  previous_expires_at: number | null;
}

/**
 * The reads made on every authenticated request, compiled once
 * (`Database.prepareRead`): only the columns authentication uses, and an API
 * key together with its owner in one query rather than two. Their rows are
 * kept in memory until the next write to `users` or `api_keys` by any daemon (a
 * suspension, role change, logout-everywhere or revocation is seen by the very
 * next request), for at most a second. `signedIn` is also dropped on a write
 * to `refresh_tokens` (a logout or a reuse is seen by the very next request).
 */
export interface AuthReads {
  subject: PreparedRead<{ id: string }, AuthSubject>;
  /** `subject` and the sign-in `sid` of the user `id`; kept until the next write to `users` or `refresh_tokens`. */
  signedIn: PreparedRead<{ id: string; sid: string }, SignedInSubject>;
  /** A key by its current secret or by the previous one it keeps after a roll (the caller checks `previous_expires_at`). */
  apiKey: PreparedRead<{ hash: string }, ApiKeySubject>;
}

const KEEP_MS = 1000;
const KEEP_ENTRIES = 10_000;

export function prepareAuthReads(database: Database): AuthReads {
  return {
    subject: database.prepareRead(
      (db, p: { id: string }) =>
        db
          .selectFrom('users')
          .select(['id', 'tenant_id', 'email', 'role', 'tier', 'status', 'tokens_not_before'])
          .where('id', '=', p.id),
      { cache: { tables: ['users'], ttlMs: KEEP_MS, maxEntries: KEEP_ENTRIES } },
    ),
    signedIn: database.prepareRead(
      (db, p: { id: string; sid: string }) =>
        db
          .selectFrom('users')
          .select(['id', 'tenant_id', 'email', 'role', 'tier', 'status', 'tokens_not_before'])
          .select((eb) =>
            eb
              .exists(
                eb
                  .selectFrom('refresh_tokens')
                  .select('refresh_tokens.id')
                  .where('refresh_tokens.family_id', '=', p.sid)
                  .where('refresh_tokens.status', '!=', 'revoked'),
              )
              .as('sign_in_live'),
          )
          .where('users.id', '=', p.id),
      { cache: { tables: ['users', 'refresh_tokens'], ttlMs: KEEP_MS, maxEntries: KEEP_ENTRIES } },
    ),
    apiKey: database.prepareRead(
      (db, p: { hash: string }) =>
        db
          .selectFrom('api_keys')
          .innerJoin('users', 'users.id', 'api_keys.user_id')
          .select([
            'api_keys.id as key_id',
            'api_keys.scopes',
            'api_keys.rate_limit_per_hour',
            'api_keys.expires_at',
            'api_keys.revoked_at',
            'api_keys.last_used_at',
            'api_keys.key_hash',
            'api_keys.previous_expires_at',
            'users.id as user_id',
            'users.tenant_id',
            'users.email',
            'users.role',
            'users.tier',
            'users.status',
          ])
          // Its current secret or the one it had before its last roll: both columns are indexed
          // (the planners use one index each, SQLite's OR optimisation and Postgres's BitmapOr).
          .where((eb) => eb.or([eb('api_keys.key_hash', '=', p.hash), eb('api_keys.previous_key_hash', '=', p.hash)])),
      { cache: { tables: ['api_keys', 'users'], ttlMs: KEEP_MS, maxEntries: KEEP_ENTRIES } },
    ),
  };
}
