import { auditContext } from '../audit/actor.js';
import type { AuditEvent, AuditLogger } from '../audit/types.js';
import { setBounded } from '../bounded-map.js';
import type { Clock } from '../clock.js';
import { GatewayError, type ErrorCode } from '../errors.js';
import { newId } from '../ids.js';
import { isKept, keep, type Database, type Kept, type Queryable } from '../storage/database.js';
import type { AuthReads, AuthSubject } from '../storage/repos/auth-reads.js';
import type { ApiKeyRow, CredentialRepository } from '../storage/repos/credentials.js';
import type { UserRepository, UserRow } from '../storage/repos/users.js';
import { type AccessTokens, generateRefreshToken } from './access-tokens.js';
import { hashSecret, isWellFormedApiKey } from './api-key-format.js';
import { normalizeEmail } from './email.js';
import type { LoginThrottle, ThrottledAttempt } from './login-throttle.js';
import { MAX_PASSWORD_BYTES, checkPasswordPolicy, type PasswordHasher } from './passwords.js';
import { scopesForRole, type Principal, type Scope } from './principal.js';
import type { SecretBox } from './secret-box.js';
import { canonicalRecoveryCode, checkTotp, newRecoveryCodes, newTotpSecret, totpUri } from './totp.js';

/** Where a request came from, for throttling and the audit trail. */
export interface ClientInfo {
  ip: string;
  userAgent: string | null;
  requestId: string;
}

/**
 * What a credential was accepted as, plus what can end it: the access token's
 * expiry and issue time, or the API key's expiry. Holds no secret (a stream
 * ticket keeps one in Redis) and is checked again with `grantEnded`.
 */
export interface CredentialGrant {
  principal: Principal;
  /** Epoch ms after which the credential is dead (access token `exp`, API key `expires_at`); null = never. */
  expiresAt: number | null;
  /** The access token's issue time (ms), checked against the user's `tokens_not_before` (logout everywhere). */
  issuedAtMs: number | null;
  /**
   * API keys: the SHA-256 of the secret presented (what the database keeps; not a credential). After
   * a roll it holds as the key's previous secret until the grace period ends. Absent: not checked.
   */
  secretHash?: string | null;
}

export interface TokenPair {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  token_type: 'Bearer';
}

/** What `POST /v1/auth/login` carries. */
export interface SignInInput {
  email: string;
  password: string;
  mfa_token?: string;
}

/** A sign-in: the user as it is now (its `last_login_at` set) and the new token pair. */
export interface SignedIn {
  user: UserRow;
  tokens: TokenPair;
}

/** A TOTP enrolment begun: the new secret and its otpauth:// URL for an authenticator app. */
export interface MfaEnrolment {
  secret: string;
  otpauthUrl: string;
}

/** MFA turned on: the recovery codes (shown once), the other sign-ins it ended, whether to sign in again. */
export interface MfaEnabled {
  recoveryCodes: string[];
  revokedSignIns: number;
  signInAgain: boolean;
}

/** What logout-all and a password change leave of the user's API keys (which they do not end). */
export interface ApiKeysAfterSignOut {
  /** Still live after the call (none when they were revoked). */
  live: ApiKeyRow[];
  /** Revoked by this call (`revoke_api_keys`), as they are now. */
  revoked: ApiKeyRow[];
  /** When the call took effect: a key's status is told against it. */
  at: number;
}

export interface AuthServiceDeps {
  /** Opens the transactions; the rows go through the repositories below (built once by the container). */
  database: Database;
  users: UserRepository;
  credentials: CredentialRepository;
  /** The prepared per-request reads (`prepareAuthReads`). */
  reads: AuthReads;
  clock: Clock;
  hasher: PasswordHasher;
  accessTokens: AccessTokens;
  audit: AuditLogger;
  secretBox: SecretBox;
  throttle: LoginThrottle;
  refreshTtlMs: number;
  issuer: string;
}

/** How a credential was presented, for the auth outcome metric (a fixed set). */
export type AuthMethod = 'jwt' | 'api_key' | 'password' | 'refresh' | 'none';

/**
 * Sees every authentication, sign-in and refresh: the method and `success` or
 * the error code it failed with (`ERROR` for anything that is not a
 * GatewayError). Set by daemon/monitoring; never sees the credential.
 */
export type AuthObserver = (method: AuthMethod, outcome: string) => void;

/** Only recompute last_used_at this often: a write per request would cost more than the lookup. */
const KEY_TOUCH_INTERVAL_MS = 60_000;
/** API keys whose hash is kept (see AuthService.keyHashes). */
const KNOWN_KEYS = 10_000;

/**
 * Sign-in, tokens, MFA and request authentication. Every outcome goes to the
 * audit logger; every failure answers without saying which part was wrong.
 */
export class AuthService {
  private readonly users: UserRepository;
  private readonly creds: CredentialRepository;
  private readonly reads: AuthReads;
  /**
   * Principals built from a kept user row (`Kept`, Database.prepareRead), per
   * verified claims (AccessTokens keeps them per token): reused while the read
   * returns the same kept row. Weak: nothing outlives what it was built from.
   */
  private readonly tokenPrincipals = new WeakMap<object, { user: Kept<object>; principal: Kept<Principal> }>();
  /** Principals built from a kept API key row, per row: a new row (after any write) builds a new one. */
  private readonly keyPrincipals = new WeakMap<Kept<object>, Kept<Principal>>();
  /**
   * API key -> its sha256, for keys that were well formed and found: the format
   * check and the hash are skipped on the key's next request. Bounded, oldest
   * first; only keys that exist are stored, so guesses cannot fill it (an
   * access token is kept the same way in AccessTokens).
   */
  private readonly keyHashes = new Map<string, string>();
  private observer: AuthObserver | null = null;

  constructor(private readonly deps: AuthServiceDeps) {
    this.users = deps.users;
    this.creds = deps.credentials;
    this.reads = deps.reads;
  }

  /** Reports each outcome of `authenticate`, `login` and `refresh` to `observer`. */
  observe(observer: AuthObserver): void {
    this.observer = observer;
  }

  private async observed<T>(method: AuthMethod, work: Promise<T>): Promise<T> {
    const observer = this.observer;
    if (!observer) return work;
    try {
      const result = await work;
      observer(method, 'success');
      return result;
    } catch (err) {
      observer(method, err instanceof GatewayError ? err.code : 'ERROR');
      throw err;
    }
  }

  private audit(event: Omit<AuditEvent, 'ip' | 'userAgent' | 'requestId'>, client?: ClientInfo): Promise<void> {
    return this.deps.audit.record({ ...event, ...auditContext(client) });
  }

  private async failLogin(
    email: string,
    user: UserRow | undefined,
    reason: string,
    client: ClientInfo,
    error: GatewayError,
    attempt: ThrottledAttempt,
  ): Promise<never> {
    attempt.failed();
    await this.audit(
      {
        action: 'auth.login_failed',
        outcome: 'failure',
        actor: { type: user ? 'user' : 'anonymous', id: user?.id ?? null },
        tenantId: user?.tenant_id ?? null,
        target: user ? { type: 'user', id: user.id } : null,
        details: { reason, email },
      },
      client,
    );
    throw error;
  }

  /**
   * Run at start. After a JWT_SECRET rotation: re-encrypts every MFA secret
   * still sealed under a rotated-out secret with the current one
   * (compare-and-set, so an enrolment racing this is never overwritten).
   * Always: counts the secrets sealed under no configured secret
   * (`unreadable`, the first user ids in `unreadableUsers`): JWT_SECRET changed
   * without the old one in JWT_PREVIOUS_SECRETS. Those users' TOTP codes answer
   * MFA_UNAVAILABLE until the old secret is configured again or an
   * administrator runs `keen-admin users reset-mfa`.
   */
  async resealSecrets(): Promise<{ resealed: number; unreadable: number; unreadableUsers: string[] }> {
    const box = this.deps.secretBox;
    let resealed = 0;
    let unreadable = 0;
    const unreadableUsers: string[] = [];
    for (const row of await this.users.listSealedMfaSecrets()) {
      let next: string | null;
      try {
        // null when the current secret sealed it (always so without JWT_PREVIOUS_SECRETS).
        next = box.reseal(row.mfa_secret_enc);
      } catch {
        unreadable++;
        if (unreadableUsers.length < 20) unreadableUsers.push(row.id);
        continue;
      }
      if (next !== null && (await this.users.replaceSealedMfaSecret(row.id, row.mfa_secret_enc, next))) resealed++;
    }
    return { resealed, unreadable, unreadableUsers };
  }

  /** POST /v1/auth/login. */
  login(input: SignInInput, client: ClientInfo): Promise<SignedIn> {
    return this.observed('password', this.signIn(input, client));
  }

  private async signIn(input: SignInInput, client: ClientInfo): Promise<SignedIn> {
    const email = normalizeEmail(input.email);
    if (Buffer.byteLength(input.password, 'utf8') > MAX_PASSWORD_BYTES) {
      throw new GatewayError('INVALID_FIELD', `password must be at most ${MAX_PASSWORD_BYTES} bytes`, {
        details: [{ field: 'password', message: `must be at most ${MAX_PASSWORD_BYTES} bytes` }],
      });
    }
    // Reserved before any check (atomic, so parallel guesses cannot all pass); kept when a check fails.
    const attempt = await this.reserveCheck(email, client, () =>
      this.audit(
        {
          action: 'auth.login_throttled',
          outcome: 'denied',
          actor: { type: 'anonymous', id: null },
          tenantId: null,
          details: { email },
        },
        client,
      ),
    );
    return this.signInReserved(input, email, client, attempt).finally(() => attempt.release());
  }

  private async signInReserved(
    input: SignInInput,
    email: string,
    client: ClientInfo,
    attempt: ThrottledAttempt,
  ): Promise<SignedIn> {
    const user = await this.users.findByEmail(email);
    const ok = await this.deps.hasher.verify(user?.password_hash ?? null, input.password, {
      clients: [`ip:${client.ip}`],
      signIn: true,
    });
    const invalid = new GatewayError('INVALID_CREDENTIALS', 'email or password is incorrect');
    if (!ok || !user)
      return this.failLogin(email, user, user ? 'wrong_password' : 'unknown_email', client, invalid, attempt);
    if (user.status !== 'active') {
      return this.failLogin(
        email,
        user,
        'account_suspended',
        client,
        new GatewayError('ACCOUNT_SUSPENDED', 'this account is suspended'),
        attempt,
      );
    }
    if (user.mfa_enabled === 1) {
      if (!input.mfa_token) {
        return this.failLogin(
          email,
          user,
          'mfa_missing',
          client,
          new GatewayError('MFA_REQUIRED', 'a TOTP code or recovery code is required (mfa_token)'),
          attempt,
        );
      }
      const how = await this.checkSecondFactor(user, input.mfa_token, client);
      if (!how)
        return this.failLogin(
          email,
          user,
          'invalid_mfa',
          client,
          new GatewayError('INVALID_MFA', 'the TOTP or recovery code is invalid'),
          attempt,
        );
      if (how === 'recovery_code') {
        await this.audit(
          {
            action: 'auth.mfa_recovery_used',
            outcome: 'success',
            actor: { type: 'user', id: user.id },
            tenantId: user.tenant_id,
            target: { type: 'user', id: user.id },
          },
          client,
        );
      }
    }
    await attempt.succeeded();
    const now = this.deps.clock.now();
    await this.users.update(user.id, { last_login_at: now });
    const tokens = await this.issueTokens(user, newId('rtk', now));
    await this.audit(
      {
        action: 'auth.login',
        outcome: 'success',
        actor: { type: 'user', id: user.id },
        tenantId: user.tenant_id,
        target: { type: 'user', id: user.id },
      },
      client,
    );
    return { user: { ...user, last_login_at: now }, tokens };
  }

  /**
   * Reserves one check of a secret of `email` from this client (LoginThrottle:
   * the same budgets for sign-in and for the checks behind a session), or
   * audits the refusal (`denied`) and throws 429 LOGIN_THROTTLED.
   */
  private async reserveCheck(
    email: string,
    client: ClientInfo,
    denied: () => Promise<void>,
  ): Promise<ThrottledAttempt> {
    try {
      return await this.deps.throttle.reserve(email, client.ip);
    } catch (err) {
      if (err instanceof GatewayError && err.code === 'LOGIN_THROTTLED') await denied();
      throw err;
    }
  }

  /** Runs a check of a secret under its reservation: kept when the check fails, given back when it passes or cannot be made. */
  private async settle(attempt: ThrottledAttempt, check: () => Promise<boolean>): Promise<boolean> {
    try {
      const ok = await check();
      if (ok) await attempt.succeeded();
      else attempt.failed();
      return ok;
    } finally {
      await attempt.release();
    }
  }

  /**
   * A TOTP code (never the same time step twice) or an unused recovery code.
   * A TOTP secret that no configured server secret opens is MFA_UNAVAILABLE
   * (audited as `auth.mfa_unreadable`), not a bare 500; recovery codes are
   * hashed, not sealed, and keep working.
   */
  private async checkSecondFactor(
    user: UserRow,
    token: string,
    client?: ClientInfo,
    during: 'login' | 'mfa_disable' = 'login',
  ): Promise<'totp' | 'recovery_code' | null> {
    const now = this.deps.clock.now();
    if (/^\d{6}$/.test(token)) {
      if (!user.mfa_secret_enc) return null;
      const step = checkTotp(await this.openMfaSecret(user, user.mfa_secret_enc, client, during), token, now);
      if (step === null) return null;
      return (await this.users.advanceMfaStep(user.id, step)) ? 'totp' : null;
    }
    const code = canonicalRecoveryCode(token);
    if (!/^[0-9a-z]{5}-[0-9a-z]{5}$/.test(code)) return null;
    return (await this.users.useRecoveryCode(user.id, hashSecret(code), now)) ? 'recovery_code' : null;
  }

  /** The user's TOTP secret; MFA_UNAVAILABLE, audited, when it opens with neither JWT_SECRET nor a JWT_PREVIOUS_SECRETS entry. */
  private async openMfaSecret(
    user: UserRow,
    sealed: string,
    client: ClientInfo | undefined,
    during: string,
  ): Promise<string> {
    try {
      return this.deps.secretBox.open(sealed);
    } catch {
      await this.audit(
        {
          action: 'auth.mfa_unreadable',
          outcome: 'failure',
          actor: { type: 'user', id: user.id },
          tenantId: user.tenant_id,
          target: { type: 'user', id: user.id },
          details: { during },
        },
        client,
      );
      throw new GatewayError(
        'MFA_UNAVAILABLE',
        'your authenticator codes cannot be checked: the server can no longer read your MFA secret (its signing secret changed). Sign in with a recovery code, or ask an administrator to reset your MFA (keen-admin users reset-mfa), then enrol again',
      );
    }
  }

  /** A new refresh token in the family (sign-in) `familyId`, and an access token naming it (`sid`). */
  private async issueTokens(user: UserRow, familyId: string, trx?: Queryable): Promise<TokenPair> {
    const now = this.deps.clock.now();
    const refresh = generateRefreshToken();
    await (trx ? this.creds.with(trx) : this.creds).insertRefreshToken({
      id: newId('rtk', now),
      user_id: user.id,
      family_id: familyId,
      token_hash: hashSecret(refresh),
      status: 'active',
      expires_at: now + this.deps.refreshTtlMs,
      created_at: now,
      used_at: null,
    });
    return {
      access_token: this.deps.accessTokens.sign({
        id: user.id,
        scopes: scopesForRole(user.role),
        tier: user.tier,
        role: user.role,
        tenantId: user.tenant_id,
        signInId: familyId,
      }),
      refresh_token: refresh,
      expires_in: this.deps.accessTokens.ttlSeconds,
      token_type: 'Bearer',
    };
  }

  /**
   * POST /v1/auth/refresh: rotates. A token that was already used (or lost a
   * race to be used) is a sign of theft: its whole family is revoked.
   */
  refresh(refreshToken: string, client: ClientInfo): Promise<{ tokens: TokenPair }> {
    return this.observed('refresh', this.rotate(refreshToken, client));
  }

  private async rotate(refreshToken: string, client: ClientInfo): Promise<{ tokens: TokenPair }> {
    const invalid = new GatewayError('INVALID_TOKEN', 'refresh token is invalid');
    if (!/^rt_[A-Za-z0-9_-]{43}$/.test(refreshToken)) throw invalid;
    const row = await this.creds.findRefreshToken(hashSecret(refreshToken));
    if (!row) throw invalid;
    const now = this.deps.clock.now();
    const user = await this.users.findById(row.user_id);
    const reused = async (): Promise<never> => {
      await this.revokeSignIn(row.user_id, row.family_id);
      await this.audit(
        {
          action: 'auth.refresh_reused',
          outcome: 'denied',
          actor: { type: 'user', id: row.user_id },
          tenantId: user?.tenant_id ?? null,
          target: { type: 'user', id: row.user_id },
          details: { family_id: row.family_id },
        },
        client,
      );
      throw new GatewayError(
        'REFRESH_TOKEN_REUSED',
        'refresh token was already used; every session of this sign-in is revoked',
      );
    };
    if (row.status === 'used') return reused();
    if (row.status === 'revoked') throw invalid;
    if (row.expires_at <= now) throw new GatewayError('TOKEN_EXPIRED', 'refresh token has expired');
    if (!user) throw invalid;
    if (user.status !== 'active') throw new GatewayError('ACCOUNT_SUSPENDED', 'this account is suspended');
    if (row.created_at < user.tokens_not_before) throw invalid;
    // Used and replaced in one transaction, under the user's row lock (Postgres; SQLite writers are serial): a
    // revocation of the user's sign-ins (MFA enabled, logout-all) either comes first, and the token is no longer
    // active, or sees the new token and revokes it too; never a new token in a family revoked meanwhile.
    const tokens = await this.deps.database.transaction(async (trx) => {
      if (this.deps.database.dialect === 'postgres') await this.creds.with(trx).lockOwner(user.id);
      if (!(await this.creds.with(trx).markRefreshTokenUsed(row.id, now))) return null;
      return this.issueTokens(user, row.family_id, trx);
    });
    if (!tokens) return reused();
    await this.audit(
      {
        action: 'auth.refresh',
        outcome: 'success',
        actor: { type: 'user', id: user.id },
        tenantId: user.tenant_id,
        target: { type: 'user', id: user.id },
      },
      client,
    );
    return { tokens };
  }

  /** Revokes one sign-in (refresh-token family), under the owner's row lock like a rotation, so none of it is left active. */
  private async revokeSignIn(userId: string, familyId: string): Promise<void> {
    await this.deps.database.transaction(async (trx) => {
      if (this.deps.database.dialect === 'postgres') await this.creds.with(trx).lockOwner(userId);
      await this.creds.with(trx).revokeFamily(familyId);
    });
  }

  /**
   * POST /v1/auth/logout: revokes the family of the given refresh token, if it
   * is the caller's. The sign-in's access tokens (`sid` = the family) are
   * refused from the next request on.
   */
  async logout(principal: Principal, refreshToken: string, client: ClientInfo): Promise<void> {
    const row = /^rt_[A-Za-z0-9_-]{43}$/.test(refreshToken)
      ? await this.creds.findRefreshToken(hashSecret(refreshToken))
      : undefined;
    if (!row || row.user_id !== principal.userId) throw new GatewayError('INVALID_TOKEN', 'refresh token is invalid');
    await this.revokeSignIn(row.user_id, row.family_id);
    await this.audit(
      {
        action: 'auth.logout',
        outcome: 'success',
        actor: { type: 'user', id: principal.userId },
        tenantId: principal.tenantId,
        target: { type: 'user', id: principal.userId },
      },
      client,
    );
  }

  /**
   * POST /v1/auth/logout-all: every refresh token revoked and every access
   * token issued so far refused. API keys are not sign-ins: the answer lists
   * the ones still live, and `revokeApiKeys` revokes them in the same transaction.
   */
  async logoutEverywhere(
    principal: Principal,
    client: ClientInfo,
    options: { revokeApiKeys?: boolean } = {},
  ): Promise<ApiKeysAfterSignOut> {
    return this.signOutEverywhere(principal.userId, principal.tenantId, 'logout_all', {}, options, client);
  }

  /**
   * Ends every sign-in of a user in one transaction: `change` written to the user row with
   * `tokens_not_before` (so every access token issued so far is refused), every refresh token
   * revoked, the API keys listed or revoked; then audited as `auth.<reason>`.
   */
  private async signOutEverywhere(
    userId: string,
    tenantId: string | null,
    reason: 'logout_all' | 'password_change',
    change: { password_hash?: string },
    options: { revokeApiKeys?: boolean },
    client: ClientInfo,
  ): Promise<ApiKeysAfterSignOut> {
    const now = this.deps.clock.now();
    const keys = await this.deps.database.transaction(async (trx) => {
      // The user row first, then the tokens: the order every transaction touching both takes (see rotate).
      await this.users.with(trx).update(userId, { ...change, tokens_not_before: now + 1, updated_at: now });
      await this.creds.with(trx).revokeAllForUser(userId);
      return this.settleApiKeys(trx, userId, tenantId, options.revokeApiKeys === true, reason, now, client);
    });
    await this.audit(
      {
        action: reason === 'logout_all' ? 'auth.logout_all' : 'auth.password_change',
        outcome: 'success',
        actor: { type: 'user', id: userId },
        tenantId,
        target: { type: 'user', id: userId },
        details: { keys_revoked: keys.revoked.length, keys_live: keys.live.length },
      },
      client,
    );
    return keys;
  }

  /**
   * The user's live API keys after a sign-out everywhere: listed, or revoked
   * (each audited as `key.revoke` with the reason) when `revoke`, inside `trx`.
   */
  private async settleApiKeys(
    trx: Queryable,
    userId: string,
    tenantId: string | null,
    revoke: boolean,
    reason: 'logout_all' | 'password_change',
    now: number,
    client: ClientInfo,
  ): Promise<ApiKeysAfterSignOut> {
    const creds = this.creds.with(trx);
    const live = await creds.listLiveApiKeys(userId, now);
    if (!revoke) return { live, revoked: [], at: now };
    const revoked = new Set(
      await creds.revokeApiKeysOf(
        userId,
        live.map((k) => k.id),
        now,
      ),
    );
    const gone = live.filter((k) => revoked.has(k.id));
    for (const k of gone) {
      await this.deps.audit.record(
        {
          action: 'key.revoke',
          outcome: 'success',
          actor: { type: 'user', id: userId },
          tenantId: k.tenant_id ?? tenantId,
          target: { type: 'api_key', id: k.id },
          ...auditContext(client),
          details: { owner_id: userId, reason },
        },
        trx,
      );
    }
    return { live: [], revoked: gone.map((k) => ({ ...k, revoked_at: now })), at: now };
  }

  /**
   * POST /v1/auth/password: needs the current password; ends every other
   * session. Lists (or, with `revokeApiKeys`, revokes) the live API keys as
   * logout-all does.
   */
  async changePassword(
    principal: Principal,
    current: string,
    next: string,
    client: ClientInfo,
    options: { revokeApiKeys?: boolean } = {},
  ): Promise<ApiKeysAfterSignOut> {
    checkPasswordPolicy(next, 'new_password');
    const user = await this.users.findById(principal.userId);
    // Throttled like a sign-in, per user (its email) and per address; the hashes are this user's share.
    const claim = { clients: [`user:${principal.userId}`, `ip:${client.ip}`] };
    const attempt = user
      ? await this.reserveCheck(user.email, client, () =>
          this.audit(
            {
              action: 'auth.password_change',
              outcome: 'denied',
              actor: { type: 'user', id: principal.userId },
              tenantId: principal.tenantId,
              details: { reason: 'throttled' },
            },
            client,
          ),
        )
      : null;
    if (
      !user ||
      !attempt ||
      !(await this.settle(attempt, () => this.deps.hasher.verify(user.password_hash, current, claim)))
    ) {
      await this.audit(
        {
          action: 'auth.password_change',
          outcome: 'failure',
          actor: { type: 'user', id: principal.userId },
          tenantId: principal.tenantId,
          details: { reason: 'wrong_password' },
        },
        client,
      );
      throw new GatewayError('INVALID_CREDENTIALS', 'current password is incorrect');
    }
    const hash = await this.deps.hasher.hash(next, claim);
    return this.signOutEverywhere(user.id, user.tenant_id, 'password_change', { password_hash: hash }, options, client);
  }

  /** POST /v1/auth/mfa/setup: a new secret, pending until enabled with a valid code. */
  async mfaSetup(principal: Principal, client: ClientInfo): Promise<MfaEnrolment> {
    const user = await this.mustUser(principal.userId);
    if (user.mfa_enabled === 1) throw new GatewayError('INVALID_STATE', 'MFA is already enabled; disable it first');
    const secret = newTotpSecret();
    await this.users.update(user.id, {
      mfa_secret_enc: this.deps.secretBox.seal(secret),
      mfa_last_step: null,
      updated_at: this.deps.clock.now(),
    });
    await this.audit(
      {
        action: 'auth.mfa_setup',
        outcome: 'success',
        actor: { type: 'user', id: user.id },
        tenantId: user.tenant_id,
        target: { type: 'user', id: user.id },
      },
      client,
    );
    return { secret, otpauthUrl: totpUri(secret, user.email, this.deps.issuer) };
  }

  /**
   * POST /v1/auth/mfa/enable: proves the authenticator works; returns recovery
   * codes once. Every other sign-in ends with it (their refresh tokens are
   * revoked and their access tokens refused), so a refresh token taken before
   * cannot skip the second factor. The caller's sign-in (its `sid`) is kept;
   * a caller whose access token names none (issued before sign-in ids) keeps
   * no refresh token either: `signInAgain`.
   */
  async mfaEnable(principal: Principal, token: string, client: ClientInfo): Promise<MfaEnabled> {
    const user = await this.mustUser(principal.userId);
    if (user.mfa_enabled === 1) throw new GatewayError('INVALID_STATE', 'MFA is already enabled');
    if (!user.mfa_secret_enc) throw new GatewayError('INVALID_STATE', 'call /v1/auth/mfa/setup first');
    const now = this.deps.clock.now();
    const step = checkTotp(this.deps.secretBox.open(user.mfa_secret_enc), token, now);
    if (step === null || !(await this.users.advanceMfaStep(user.id, step))) {
      await this.audit(
        {
          action: 'auth.mfa_enable',
          outcome: 'failure',
          actor: { type: 'user', id: user.id },
          tenantId: user.tenant_id,
          details: { reason: 'invalid_mfa' },
        },
        client,
      );
      throw new GatewayError('INVALID_MFA', 'the TOTP code is invalid');
    }
    const codes = newRecoveryCodes(10);
    const keep = principal.signInId ?? null;
    const revoked = await this.deps.database.transaction(async (trx) => {
      await this.users.with(trx).update(user.id, { mfa_enabled: 1, updated_at: now });
      await this.users.with(trx).replaceRecoveryCodes(
        user.id,
        codes.map((c) => ({ id: newId('rtk', now), code_hash: hashSecret(c), created_at: now })),
      );
      return this.creds.with(trx).revokeOtherFamilies(user.id, keep, now);
    });
    await this.audit(
      {
        action: 'auth.mfa_enable',
        outcome: 'success',
        actor: { type: 'user', id: user.id },
        tenantId: user.tenant_id,
        target: { type: 'user', id: user.id },
        details: { revoked_sign_ins: revoked, kept_sign_in: keep },
      },
      client,
    );
    return { recoveryCodes: codes, revokedSignIns: revoked, signInAgain: keep === null };
  }

  /** POST /v1/auth/mfa/disable: needs a current TOTP or a recovery code. */
  async mfaDisable(principal: Principal, token: string, client: ClientInfo): Promise<void> {
    const user = await this.mustUser(principal.userId);
    if (user.mfa_enabled !== 1) throw new GatewayError('INVALID_STATE', 'MFA is not enabled');
    // Throttled like a sign-in, per user (its email) and per address.
    const attempt = await this.reserveCheck(user.email, client, () =>
      this.audit(
        {
          action: 'auth.mfa_disable',
          outcome: 'denied',
          actor: { type: 'user', id: user.id },
          tenantId: user.tenant_id,
          details: { reason: 'throttled' },
        },
        client,
      ),
    );
    if (
      !(await this.settle(
        attempt,
        async () => (await this.checkSecondFactor(user, token, client, 'mfa_disable')) !== null,
      ))
    ) {
      await this.audit(
        {
          action: 'auth.mfa_disable',
          outcome: 'failure',
          actor: { type: 'user', id: user.id },
          tenantId: user.tenant_id,
          details: { reason: 'invalid_mfa' },
        },
        client,
      );
      throw new GatewayError('INVALID_MFA', 'the TOTP or recovery code is invalid');
    }
    const now = this.deps.clock.now();
    await this.deps.database.transaction(async (trx) => {
      await this.users
        .with(trx)
        .update(user.id, { mfa_enabled: 0, mfa_secret_enc: null, mfa_last_step: null, updated_at: now });
      await this.users.with(trx).replaceRecoveryCodes(user.id, []);
    });
    await this.audit(
      {
        action: 'auth.mfa_disable',
        outcome: 'success',
        actor: { type: 'user', id: user.id },
        tenantId: user.tenant_id,
        target: { type: 'user', id: user.id },
      },
      client,
    );
  }

  private async mustUser(id: string): Promise<UserRow> {
    const user = await this.users.findById(id);
    if (!user) throw new GatewayError('INVALID_TOKEN', 'credential is invalid');
    return user;
  }

  /**
   * Turns an Authorization header into a principal, or throws a
   * 401 (docs/API.md, "Errors"). Bearer: a verified access token whose user is active and whose issue
   * time is after the user's not-before. ApiKey: a well-formed key (checked
   * before any read), not revoked, not expired, of an active user; a rolled key's
   * previous secret only until the end of its grace period (`previous_expires_at`).
   */
  authenticate(header: string | undefined): Promise<Principal> {
    if (!this.observer) return this.authenticateHeader(header);
    const method: AuthMethod = header?.startsWith('Bearer ')
      ? 'jwt'
      : header?.startsWith('ApiKey ')
        ? 'api_key'
        : 'none';
    return this.observed(method, this.authenticateHeader(header));
  }

  /**
   * `authenticate`, and what can end the credential (for connections that stay
   * open: the stream). The token's times come from its verified claims.
   */
  async grant(header: string | undefined): Promise<CredentialGrant> {
    return this.grantOf(await this.authenticate(header), header!);
  }

  /**
   * The grant of a principal that `authenticate` already accepted from `header` (a route's
   * guard did): what can end it, without authenticating again (no second outcome for the
   * auth metric). `header` must be the one the principal came from.
   */
  async grantOf(principal: Principal, header: string): Promise<CredentialGrant> {
    const space = header.indexOf(' ');
    const credential = header.slice(space + 1).trim();
    if (space <= 0 || header.slice(0, space) !== (principal.via === 'jwt' ? 'Bearer' : 'ApiKey')) {
      throw new GatewayError('INVALID_TOKEN', 'credential is invalid');
    }
    if (principal.via === 'jwt') {
      // Verified a moment ago: a lookup in AccessTokens' cache of checked tokens, not a second decode.
      const claims = this.deps.accessTokens.verify(credential);
      if (claims.sub !== principal.userId) throw new GatewayError('INVALID_TOKEN', 'credential is invalid');
      return { principal, expiresAt: claims.exp * 1000, issuedAtMs: claims.iat_ms };
    }
    const key = principal.apiKeyId ? await this.creds.findApiKey(principal.apiKeyId) : undefined;
    // A key presented with its previous secret (rolled, in its grace period) ends with it: see grantEnded.
    const secretHash = hashSecret(credential);
    if (!key || (secretHash !== key.key_hash && secretHash !== key.previous_key_hash)) {
      throw new GatewayError('INVALID_TOKEN', 'credential is invalid');
    }
    return { principal, expiresAt: key.expires_at, issuedAtMs: null, secretHash };
  }

  /**
   * Why a grant no longer holds (the error code a 401 would carry now), or null
   * while it does: expired, user gone or suspended, signed out everywhere, its
   * sign-in ended (logout, refresh-token reuse, MFA enabled elsewhere), its API
   * key revoked or expired. One user row and at most one key or sign-in row.
   */
  async grantEnded(grant: CredentialGrant): Promise<ErrorCode | null> {
    const now = this.deps.clock.now();
    const p = grant.principal;
    if (grant.expiresAt !== null && grant.expiresAt <= now) {
      return p.via === 'jwt' ? 'TOKEN_EXPIRED' : 'API_KEY_EXPIRED';
    }
    const user = await this.users.findById(p.userId);
    if (!user) return 'INVALID_TOKEN';
    if (user.status !== 'active') return 'ACCOUNT_SUSPENDED';
    if (grant.issuedAtMs !== null && grant.issuedAtMs < Number(user.tokens_not_before)) return 'INVALID_TOKEN';
    if (p.signInId && !(await this.creds.isSignInLive(p.userId, p.signInId))) return 'INVALID_TOKEN';
    if (p.apiKeyId) {
      const key = await this.creds.findApiKey(p.apiKeyId);
      if (!key) return 'INVALID_TOKEN';
      if (key.revoked_at !== null) return 'API_KEY_REVOKED';
      if (key.expires_at !== null && key.expires_at <= now) return 'API_KEY_EXPIRED';
      // Rolled since: the secret it was opened with holds only as the previous one, until its grace period ends.
      const secret = grant.secretHash;
      const grace = key.previous_expires_at;
      const inGrace = secret === key.previous_key_hash && grace !== null && grace > now;
      if (secret && secret !== key.key_hash && !inGrace) return 'INVALID_TOKEN';
    }
    return null;
  }

  private async authenticateHeader(header: string | undefined): Promise<Principal> {
    if (!header)
      throw new GatewayError('MISSING_TOKEN', 'Authorization header required: "Bearer <token>" or "ApiKey <key>"');
    const space = header.indexOf(' ');
    const scheme = space > 0 ? header.slice(0, space) : header;
    const credential = space > 0 ? header.slice(space + 1).trim() : '';
    if (scheme === 'Bearer' && credential) return this.authenticateJwt(credential);
    if (scheme === 'ApiKey' && credential) return this.authenticateApiKey(credential);
    throw new GatewayError('INVALID_TOKEN_FORMAT', 'Authorization must be "Bearer <token>" or "ApiKey <key>"');
  }

  private async authenticateJwt(token: string): Promise<Principal> {
    const claims = this.deps.accessTokens.verify(token);
    // A token naming its sign-in is read with it in one query; one without (issued before sign-in ids) lives until it expires.
    const user =
      claims.sid === undefined
        ? await this.reads.subject.first({ id: claims.sub })
        : await this.reads.signedIn.first({ id: claims.sub, sid: claims.sid });
    if (!user || claims.iat_ms < user.tokens_not_before)
      throw new GatewayError('INVALID_TOKEN', 'access token is invalid');
    if (user.status !== 'active') throw new GatewayError('ACCOUNT_SUSPENDED', 'this account is suspended');
    if ('sign_in_live' in user && !user.sign_in_live)
      throw new GatewayError('INVALID_TOKEN', 'access token is invalid');
    const built = this.tokenPrincipals.get(claims);
    if (built?.user === user) return built.principal;
    const principal = buildPrincipal(user, claims.scopes, null, claims.sid ?? null);
    if (!isKept(user)) return principal;
    const kept = keep(principal);
    this.tokenPrincipals.set(claims, { user, principal: kept });
    return kept;
  }

  private async authenticateApiKey(key: string): Promise<Principal> {
    let hash = this.keyHashes.get(key);
    const known = hash !== undefined;
    if (!known) {
      if (!isWellFormedApiKey(key)) throw new GatewayError('INVALID_TOKEN', 'API key is invalid');
      hash = hashSecret(key);
    }
    const row = await this.reads.apiKey.first({ hash: hash! });
    if (!row) throw new GatewayError('INVALID_TOKEN', 'API key is invalid');
    if (!known) setBounded(this.keyHashes, key, hash!, KNOWN_KEYS);
    const now = this.deps.clock.now();
    // Found by the secret it had before its last roll: accepted until the end of the grace period only.
    if (row.key_hash !== hash && (row.previous_expires_at === null || row.previous_expires_at <= now)) {
      throw new GatewayError(
        'INVALID_TOKEN',
        'API key is invalid: it was rolled to a new secret and its grace period is over',
      );
    }
    if (row.revoked_at !== null) throw new GatewayError('API_KEY_REVOKED', 'API key has been revoked');
    if (row.expires_at !== null && row.expires_at <= now)
      throw new GatewayError('API_KEY_EXPIRED', 'API key has expired');
    if (row.status !== 'active') throw new GatewayError('ACCOUNT_SUSPENDED', 'this account is suspended');
    if (row.last_used_at === null || now - row.last_used_at > KEY_TOUCH_INTERVAL_MS)
      await this.creds.touchApiKey(row.key_id, now);
    const built = isKept(row) ? this.keyPrincipals.get(row) : undefined;
    if (built) return built;
    const apiKey = { id: row.key_id, rate_limit_per_hour: row.rate_limit_per_hour };
    const principal = buildPrincipal({ ...row, id: row.user_id }, JSON.parse(row.scopes) as string[], apiKey, null);
    if (!isKept(row)) return principal;
    const kept = keep(principal);
    this.keyPrincipals.set(row, kept);
    return kept;
  }
}

/**
 * The principal of an active user: the credential's scopes cut down to what the
 * user's role holds now (a demoted user's old token or key loses the rest at once).
 */
function buildPrincipal(
  user: Omit<AuthSubject, 'tokens_not_before'>,
  credentialScopes: string[],
  key: { id: string; rate_limit_per_hour: number } | null,
  signInId: string | null,
): Principal {
  const allowed = new Set<string>(scopesForRole(user.role));
  return Object.freeze({
    userId: user.id,
    tenantId: user.tenant_id,
    email: user.email,
    role: user.role,
    tier: user.tier,
    scopes: credentialScopes.filter((s): s is Scope => allowed.has(s)),
    via: key ? 'api_key' : 'jwt',
    apiKeyId: key?.id ?? null,
    apiKeyRateLimitPerHour: key?.rate_limit_per_hour ?? null,
    signInId,
  });
}
