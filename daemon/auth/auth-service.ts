import type { AuditEvent, AuditLogger } from '../audit/types.js';
import { setBounded } from '../bounded-map.js';
import type { Clock } from '../clock.js';
import { GatewayError } from '../errors.js';
import { newId } from '../ids.js';
import type { Database } from '../storage/database.js';
import { prepareAuthReads, type AuthReads, type AuthSubject } from '../storage/repos/auth-reads.js';
import { CredentialRepository } from '../storage/repos/credentials.js';
import { UserRepository, type UserRow } from '../storage/repos/users.js';
import { AccessTokens, generateRefreshToken } from './access-tokens.js';
import { hashSecret, isWellFormedApiKey } from './api-key-format.js';
import { normalizeEmail } from './email.js';
import type { LoginThrottle } from './login-throttle.js';
import { MAX_PASSWORD_BYTES, checkPasswordPolicy, type PasswordHasher } from './passwords.js';
import { presentUser } from './presenters.js';
import { scopesForRole, type Principal, type Scope } from './principal.js';
import type { SecretBox } from './secret-box.js';
import { canonicalRecoveryCode, checkTotp, newRecoveryCodes, newTotpSecret, totpUri } from './totp.js';

/** Where a request came from, for throttling and the audit trail. */
export interface ClientInfo {
  ip: string;
  userAgent: string | null;
  requestId: string;
}

export interface TokenPair {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  token_type: 'Bearer';
}

export interface AuthServiceDeps {
  database: Database;
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
   * Principals already built, per credential: kept rows and verified claims are
   * frozen and replaced rather than changed, so the same objects mean the same
   * principal. Weak: nothing here outlives the rows it was built from.
   */
  private readonly principals = new WeakMap<object, { user: object; principal: Principal }>();
  /**
   * API key -> its sha256, for keys that were well formed and found: the format
   * check and the hash are skipped on the key's next request. Bounded, oldest
   * first; only keys that exist are stored, so guesses cannot fill it (an
   * access token is kept the same way in AccessTokens).
   */
  private readonly keyHashes = new Map<string, string>();
  private observer: AuthObserver | null = null;

  constructor(private readonly deps: AuthServiceDeps) {
    this.users = new UserRepository(deps.database.db);
    this.creds = new CredentialRepository(deps.database.db);
    this.reads = prepareAuthReads(deps.database);
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
    return this.deps.audit.record({ ...event, ip: client?.ip ?? null, userAgent: client?.userAgent ?? null, requestId: client?.requestId ?? null });
  }

  private async failLogin(email: string, user: UserRow | undefined, reason: string, client: ClientInfo, error: GatewayError): Promise<never> {
    await this.deps.throttle.recordFailure(email, client.ip);
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
   * After a JWT_SECRET rotation: re-encrypts every MFA secret still sealed
   * under a rotated-out secret with the current one (compare-and-set, so an
   * enrolment racing this is never overwritten). Run at start; nothing to do
   * without JWT_PREVIOUS_SECRETS. `unreadable`: sealed under no known secret
   * (those users need `keen-admin users reset-mfa`).
   */
  async resealSecrets(): Promise<{ resealed: number; unreadable: number }> {
    const box = this.deps.secretBox;
    if (!box.rotating) return { resealed: 0, unreadable: 0 };
    let resealed = 0;
    let unreadable = 0;
    for (const row of await this.users.listSealedMfaSecrets()) {
      let next: string | null;
      try {
        next = box.reseal(row.mfa_secret_enc);
      } catch {
        unreadable++;
        continue;
      }
      if (next !== null && (await this.users.replaceSealedMfaSecret(row.id, row.mfa_secret_enc, next))) resealed++;
    }
    return { resealed, unreadable };
  }

  /** POST /v1/auth/login. */
  login(input: { email: string; password: string; mfa_token?: string }, client: ClientInfo) {
    return this.observed('password', this.signIn(input, client));
  }

  private async signIn(input: { email: string; password: string; mfa_token?: string }, client: ClientInfo) {
    const email = normalizeEmail(input.email);
    if (Buffer.byteLength(input.password, 'utf8') > MAX_PASSWORD_BYTES) {
      throw new GatewayError('INVALID_FIELD', `password must be at most ${MAX_PASSWORD_BYTES} bytes`, {
        details: [{ field: 'password', message: `must be at most ${MAX_PASSWORD_BYTES} bytes` }],
      });
    }
    try {
      await this.deps.throttle.check(email, client.ip);
    } catch (err) {
      await this.audit({ action: 'auth.login_throttled', outcome: 'denied', actor: { type: 'anonymous', id: null }, tenantId: null, details: { email } }, client);
      throw err;
    }
    const user = await this.users.findByEmail(email);
    const ok = await this.deps.hasher.verify(user?.password_hash ?? null, input.password);
    const invalid = new GatewayError('INVALID_CREDENTIALS', 'email or password is incorrect');
    if (!ok || !user) return this.failLogin(email, user, user ? 'wrong_password' : 'unknown_email', client, invalid);
    if (user.status !== 'active') {
      return this.failLogin(email, user, 'account_suspended', client, new GatewayError('ACCOUNT_SUSPENDED', 'this account is suspended'));
    }
    if (user.mfa_enabled === 1) {
      if (!input.mfa_token) {
        return this.failLogin(email, user, 'mfa_missing', client, new GatewayError('MFA_REQUIRED', 'a TOTP code or recovery code is required (mfa_token)'));
      }
      const how = await this.checkSecondFactor(user, input.mfa_token);
      if (!how) return this.failLogin(email, user, 'invalid_mfa', client, new GatewayError('INVALID_MFA', 'the TOTP or recovery code is invalid'));
      if (how === 'recovery_code') {
        await this.audit({ action: 'auth.mfa_recovery_used', outcome: 'success', actor: { type: 'user', id: user.id }, tenantId: user.tenant_id, target: { type: 'user', id: user.id } }, client);
      }
    }
    await this.deps.throttle.recordSuccess(email, client.ip);
    const now = this.deps.clock.now();
    await this.users.update(user.id, { last_login_at: now });
    const tokens = await this.issueTokens(user, newId('rtk', now));
    await this.audit({ action: 'auth.login', outcome: 'success', actor: { type: 'user', id: user.id }, tenantId: user.tenant_id, target: { type: 'user', id: user.id } }, client);
    return { user: presentUser({ ...user, last_login_at: now }), tokens };
  }

  /** A TOTP code (never the same time step twice) or an unused recovery code. */
  private async checkSecondFactor(user: UserRow, token: string): Promise<'totp' | 'recovery_code' | null> {
    const now = this.deps.clock.now();
    if (/^\d{6}$/.test(token)) {
      if (!user.mfa_secret_enc) return null;
      const step = checkTotp(this.deps.secretBox.open(user.mfa_secret_enc), token, now);
      if (step === null) return null;
      return (await this.users.advanceMfaStep(user.id, step)) ? 'totp' : null;
    }
    const code = canonicalRecoveryCode(token);
    if (!/^[0-9a-z]{5}-[0-9a-z]{5}$/.test(code)) return null;
    return (await this.users.useRecoveryCode(user.id, hashSecret(code), now)) ? 'recovery_code' : null;
  }

  private async issueTokens(user: UserRow, familyId: string): Promise<TokenPair> {
    const now = this.deps.clock.now();
    const refresh = generateRefreshToken();
    await this.creds.insertRefreshToken({
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
      access_token: this.deps.accessTokens.sign({ id: user.id, scopes: scopesForRole(user.role), tier: user.tier, role: user.role, tenantId: user.tenant_id }),
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
      await this.creds.revokeFamily(row.family_id);
      await this.audit({ action: 'auth.refresh_reused', outcome: 'denied', actor: { type: 'user', id: row.user_id }, tenantId: user?.tenant_id ?? null, target: { type: 'user', id: row.user_id }, details: { family_id: row.family_id } }, client);
      throw new GatewayError('REFRESH_TOKEN_REUSED', 'refresh token was already used; every session of this sign-in is revoked');
    };
    if (row.status === 'used') return reused();
    if (row.status === 'revoked') throw invalid;
    if (row.expires_at <= now) throw new GatewayError('TOKEN_EXPIRED', 'refresh token has expired');
    if (!user) throw invalid;
    if (user.status !== 'active') throw new GatewayError('ACCOUNT_SUSPENDED', 'this account is suspended');
    if (row.created_at < user.tokens_not_before) throw invalid;
    if (!(await this.creds.markRefreshTokenUsed(row.id, now))) return reused();
    const tokens = await this.issueTokens(user, row.family_id);
    await this.audit({ action: 'auth.refresh', outcome: 'success', actor: { type: 'user', id: user.id }, tenantId: user.tenant_id, target: { type: 'user', id: user.id } }, client);
    return { tokens };
  }

  /** POST /v1/auth/logout: revokes the family of the given refresh token, if it is the caller's. */
  async logout(principal: Principal, refreshToken: string, client: ClientInfo): Promise<void> {
    const row = /^rt_[A-Za-z0-9_-]{43}$/.test(refreshToken) ? await this.creds.findRefreshToken(hashSecret(refreshToken)) : undefined;
    if (!row || row.user_id !== principal.userId) throw new GatewayError('INVALID_TOKEN', 'refresh token is invalid');
    await this.creds.revokeFamily(row.family_id);
    await this.audit({ action: 'auth.logout', outcome: 'success', actor: { type: 'user', id: principal.userId }, tenantId: principal.tenantId, target: { type: 'user', id: principal.userId } }, client);
  }

  /** POST /v1/auth/logout-all: every refresh token revoked and every access token issued so far refused. */
  async logoutEverywhere(principal: Principal, client: ClientInfo): Promise<void> {
    const now = this.deps.clock.now();
    await this.deps.database.transaction(async (trx) => {
      await this.creds.with(trx).revokeAllForUser(principal.userId);
      await this.users.with(trx).update(principal.userId, { tokens_not_before: now + 1, updated_at: now });
    });
    await this.audit({ action: 'auth.logout_all', outcome: 'success', actor: { type: 'user', id: principal.userId }, tenantId: principal.tenantId, target: { type: 'user', id: principal.userId } }, client);
  }

  /** POST /v1/auth/password: needs the current password; ends every other session. */
  async changePassword(principal: Principal, current: string, next: string, client: ClientInfo): Promise<void> {
    checkPasswordPolicy(next, 'new_password');
    const user = await this.users.findById(principal.userId);
    if (!user || !(await this.deps.hasher.verify(user.password_hash, current))) {
      await this.audit({ action: 'auth.password_change', outcome: 'failure', actor: { type: 'user', id: principal.userId }, tenantId: principal.tenantId, details: { reason: 'wrong_password' } }, client);
      throw new GatewayError('INVALID_CREDENTIALS', 'current password is incorrect');
    }
    const hash = await this.deps.hasher.hash(next);
    const now = this.deps.clock.now();
    await this.deps.database.transaction(async (trx) => {
      await this.users.with(trx).update(user.id, { password_hash: hash, tokens_not_before: now + 1, updated_at: now });
      await this.creds.with(trx).revokeAllForUser(user.id);
    });
    await this.audit({ action: 'auth.password_change', outcome: 'success', actor: { type: 'user', id: user.id }, tenantId: user.tenant_id, target: { type: 'user', id: user.id } }, client);
  }

  /** POST /v1/auth/mfa/setup: a new secret, pending until enabled with a valid code. */
  async mfaSetup(principal: Principal, client: ClientInfo): Promise<{ secret: string; otpauth_url: string }> {
    const user = await this.mustUser(principal.userId);
    if (user.mfa_enabled === 1) throw new GatewayError('INVALID_STATE', 'MFA is already enabled; disable it first');
    const secret = newTotpSecret();
    await this.users.update(user.id, { mfa_secret_enc: this.deps.secretBox.seal(secret), mfa_last_step: null, updated_at: this.deps.clock.now() });
    await this.audit({ action: 'auth.mfa_setup', outcome: 'success', actor: { type: 'user', id: user.id }, tenantId: user.tenant_id, target: { type: 'user', id: user.id } }, client);
    return { secret, otpauth_url: totpUri(secret, user.email, this.deps.issuer) };
  }

  /** POST /v1/auth/mfa/enable: proves the authenticator works; returns recovery codes once. */
  async mfaEnable(principal: Principal, token: string, client: ClientInfo): Promise<{ recovery_codes: string[] }> {
    const user = await this.mustUser(principal.userId);
    if (user.mfa_enabled === 1) throw new GatewayError('INVALID_STATE', 'MFA is already enabled');
    if (!user.mfa_secret_enc) throw new GatewayError('INVALID_STATE', 'call /v1/auth/mfa/setup first');
    const now = this.deps.clock.now();
    const step = checkTotp(this.deps.secretBox.open(user.mfa_secret_enc), token, now);
    if (step === null || !(await this.users.advanceMfaStep(user.id, step))) {
      await this.audit({ action: 'auth.mfa_enable', outcome: 'failure', actor: { type: 'user', id: user.id }, tenantId: user.tenant_id, details: { reason: 'invalid_mfa' } }, client);
      throw new GatewayError('INVALID_MFA', 'the TOTP code is invalid');
    }
    const codes = newRecoveryCodes(10);
    await this.deps.database.transaction(async (trx) => {
      await this.users.with(trx).update(user.id, { mfa_enabled: 1, updated_at: now });
      await this.users.with(trx).replaceRecoveryCodes(
        user.id,
        codes.map((c) => ({ id: newId('rtk', now), code_hash: hashSecret(c), created_at: now })),
      );
    });
    await this.audit({ action: 'auth.mfa_enable', outcome: 'success', actor: { type: 'user', id: user.id }, tenantId: user.tenant_id, target: { type: 'user', id: user.id } }, client);
    return { recovery_codes: codes };
  }

  /** POST /v1/auth/mfa/disable: needs a current TOTP or a recovery code. */
  async mfaDisable(principal: Principal, token: string, client: ClientInfo): Promise<void> {
    const user = await this.mustUser(principal.userId);
    if (user.mfa_enabled !== 1) throw new GatewayError('INVALID_STATE', 'MFA is not enabled');
    if (!(await this.checkSecondFactor(user, token))) {
      await this.audit({ action: 'auth.mfa_disable', outcome: 'failure', actor: { type: 'user', id: user.id }, tenantId: user.tenant_id, details: { reason: 'invalid_mfa' } }, client);
      throw new GatewayError('INVALID_MFA', 'the TOTP or recovery code is invalid');
    }
    const now = this.deps.clock.now();
    await this.deps.database.transaction(async (trx) => {
      await this.users.with(trx).update(user.id, { mfa_enabled: 0, mfa_secret_enc: null, mfa_last_step: null, updated_at: now });
      await this.users.with(trx).replaceRecoveryCodes(user.id, []);
    });
    await this.audit({ action: 'auth.mfa_disable', outcome: 'success', actor: { type: 'user', id: user.id }, tenantId: user.tenant_id, target: { type: 'user', id: user.id } }, client);
  }

  private async mustUser(id: string): Promise<UserRow> {
    const user = await this.users.findById(id);
    if (!user) throw new GatewayError('INVALID_TOKEN', 'credential is invalid');
    return user;
  }

  /**
   * Turns an Authorization header into a principal, or throws the contract's
   * 401. Bearer: a verified access token whose user is active and whose issue
   * time is after the user's not-before. ApiKey: a well-formed key (checked
   * before any read), not revoked, not expired, of an active user.
   */
  authenticate(header: string | undefined): Promise<Principal> {
    if (!this.observer) return this.authenticateHeader(header);
    const method: AuthMethod = header?.startsWith('Bearer ') ? 'jwt' : header?.startsWith('ApiKey ') ? 'api_key' : 'none';
    return this.observed(method, this.authenticateHeader(header));
  }

  private async authenticateHeader(header: string | undefined): Promise<Principal> {
    if (!header) throw new GatewayError('MISSING_TOKEN', 'Authorization header required: "Bearer <token>" or "ApiKey <key>"');
    const space = header.indexOf(' ');
    const scheme = space > 0 ? header.slice(0, space) : header;
    const credential = space > 0 ? header.slice(space + 1).trim() : '';
    if (scheme === 'Bearer' && credential) return this.authenticateJwt(credential);
    if (scheme === 'ApiKey' && credential) return this.authenticateApiKey(credential);
    throw new GatewayError('INVALID_TOKEN_FORMAT', 'Authorization must be "Bearer <token>" or "ApiKey <key>"');
  }

  private async authenticateJwt(token: string): Promise<Principal> {
    const claims = this.deps.accessTokens.verify(token);
    const user = await this.reads.subject.first({ id: claims.sub });
    if (!user || claims.iat_ms < user.tokens_not_before) throw new GatewayError('INVALID_TOKEN', 'access token is invalid');
    if (user.status !== 'active') throw new GatewayError('ACCOUNT_SUSPENDED', 'this account is suspended');
    const built = this.principals.get(claims);
    if (built?.user === user) return built.principal;
    const principal = principalOf(user, claims.scopes, null);
    if (Object.isFrozen(user)) this.principals.set(claims, { user, principal });
    return principal;
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
    if (row.revoked_at !== null) throw new GatewayError('API_KEY_REVOKED', 'API key has been revoked');
    if (row.expires_at !== null && row.expires_at <= now) throw new GatewayError('API_KEY_EXPIRED', 'API key has expired');
    if (row.status !== 'active') throw new GatewayError('ACCOUNT_SUSPENDED', 'this account is suspended');
    if (row.last_used_at === null || now - row.last_used_at > KEY_TOUCH_INTERVAL_MS) await this.creds.touchApiKey(row.key_id, now);
    const built = this.principals.get(row);
    if (built) return built.principal;
    const principal = principalOf({ ...row, id: row.user_id }, JSON.parse(row.scopes) as string[], { id: row.key_id, rate_limit_per_hour: row.rate_limit_per_hour });
    if (Object.isFrozen(row)) this.principals.set(row, { user: row, principal });
    return principal;
  }
}

/**
 * The principal of an active user: the credential's scopes cut down to what the
 * user's role holds now (a demoted user's old token or key loses the rest at once).
 */
function principalOf(user: Omit<AuthSubject, 'tokens_not_before'>, credentialScopes: string[], key: { id: string; rate_limit_per_hour: number } | null): Principal {
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
  });
}
