import type { Database } from '../database.js';
import { CredentialRepository } from './credentials.js';
import { UserRepository } from './users.js';

/** The repositories of accounts: users and tenants; refresh tokens and API keys. */
export interface AccountRepositories {
  users: UserRepository;
  credentials: CredentialRepository;
}

/**
 * Builds the account repositories over one database: the composition root does, once, and
 * passes them to AuthService, UserAdminService and BudgetAdmin; a command that is its own
 * root (`keen-admin init`) does the same.
 */
export function accountRepositories(database: Database): AccountRepositories {
  return { users: new UserRepository(database.db), credentials: new CredentialRepository(database.db) };
}
