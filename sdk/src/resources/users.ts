import type { KeenClient } from '../client.js';
import { paginate } from '../internal/paginate.js';
import type { AdminUserCreateRequest, SetTierRequest, User, UserListResponse, UserResponse } from '../types.js';

/** Parameters of `users.list()`. */
export interface UserListParams {
  /** 1 to 200 (default 50). */
  limit?: number;
  /** `next_cursor` of the previous page. */
  cursor?: string;
  /** Only the user with this email (an empty page when there is none in reach). */
  email?: string;
}

/** A tier a user can be given. */
export type UserTier = SetTierRequest['tier'];

/**
 * Users, for administrators (a credential with the `admin` scope): a platform
 * admin reaches every user, a tenant admin the users of its tenant (any other
 * is a `NotFoundError`, as if it did not exist). A user is named by its id
 * (`usr_...`) or its email wherever a method takes `user`.
 */
export class Users {
  constructor(private readonly client: KeenClient) {}

  /**
   * Creates a user (`POST /v1/admin/users`). `role: 'admin'` makes a tenant
   * admin with `tenant_id`, a platform admin without; a tenant admin creates
   * users in its own tenant, at a tier up to its own. An email in use is a
   * `ConflictError` (409 `ALREADY_EXISTS`).
   */
  async create(request: AdminUserCreateRequest): Promise<User> {
    return (await this.client.request<UserResponse>('POST', '/v1/admin/users', { body: request })).user;
  }

  /** One page of users, by id; pass `next_cursor` as `cursor` for the next. */
  list(params: UserListParams = {}): Promise<UserListResponse> {
    return this.client.request<UserListResponse>('GET', '/v1/admin/users', { query: { ...params } });
  }

  /** Every user in reach: `for await (const u of client.users.all())`. */
  all(params: Omit<UserListParams, 'cursor'> = {}): AsyncGenerator<User, void, undefined> {
    return paginate(async (cursor) => {
      const r = await this.list({ ...params, ...(cursor ? { cursor } : {}) });
      return { items: r.users, next: r.next_cursor };
    });
  }

  /** One user, by id or email (`NotFoundError` when there is none in reach). */
  async get(user: string, options: { signal?: AbortSignal } = {}): Promise<User> {
    return (await this.client.request<UserResponse>('GET', userPath(user), options)).user;
  }

  /**
   * Suspends a user: every token of theirs stops working at once.
   * Suspending a suspended user answers again (and revokes what was issued
   * since); suspending yourself is a `ConflictError` (409 `INVALID_STATE`).
   */
  suspend(user: string): Promise<User> {
    return this.action(user, 'suspend');
  }

  /** Reactivates a suspended user (a tenant admin cannot lift a platform admin's suspension: `AuthorizationError`). */
  activate(user: string): Promise<User> {
    return this.action(user, 'activate');
  }

  /**
   * Sets a user's tier. A tenant admin sets the tiers of its members, up to its
   * own, never its own nor another administrator's (`AuthorizationError`).
   */
  async setTier(user: string, tier: UserTier): Promise<User> {
    const body: SetTierRequest = { tier };
    return (await this.client.request<UserResponse>('POST', `${userPath(user)}/tier`, { body })).user;
  }

  /** Turns off MFA for a user who lost their authenticator. */
  resetMfa(user: string): Promise<User> {
    return this.action(user, 'reset-mfa');
  }

  /**
   * Lifts the sign-in back-off of a user's email after failed sign-ins from
   * elsewhere; the addresses that failed themselves stay throttled.
   */
  unlock(user: string): Promise<User> {
    return this.action(user, 'unlock');
  }

  private async action(user: string, action: 'suspend' | 'activate' | 'reset-mfa' | 'unlock'): Promise<User> {
    return (await this.client.request<UserResponse>('POST', `${userPath(user)}/${action}`, { body: {} })).user;
  }
}

function userPath(user: string): string {
  return `/v1/admin/users/${encodeURIComponent(user)}`;
}
