import type { AuthService } from '../auth/auth-service.js';
import type { Principal } from '../auth/principal.js';
import type { Clock } from '../clock.js';
import { GatewayError, type ErrorCode } from '../errors.js';
import type { Database } from '../storage/database.js';
import { CredentialRepository } from '../storage/repos/credentials.js';
import { UserRepository } from '../storage/repos/users.js';

/**
 * What a stream connection was opened with: the principal, plus what can end
 * its right to stay open (the access token's expiry and issue time, the API
 * key). A grant holds no secret, so it can sit in a ticket in Redis and be
 * re-checked without the credential it came from.
 */
export interface StreamGrant {
  principal: Principal;
  /** Epoch ms after which the credential is dead (access token `exp`, API key `expires_at`); null = never. */
  expiresAt: number | null;
  /** The access token's issue time (ms), checked against the user's `tokens_not_before` (logout everywhere). */
  issuedAtMs: number | null;
}

/** Reads `exp` and `iat_ms` of an access token that `AuthService.authenticate` has verified already. */
function tokenTimes(jwt: string): { exp: number | null; iatMs: number | null } {
  try {
    const payload = JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: unknown; iat_ms?: unknown };
    return {
      exp: typeof payload.exp === 'number' ? payload.exp * 1000 : null,
      iatMs: typeof payload.iat_ms === 'number' ? payload.iat_ms : null,
    };
  } catch {
    return { exp: null, iatMs: null };
  }
}

/**
 * Authenticates an `Authorization` value (`Bearer <jwt>` or `ApiKey <key>`)
 * through the auth service, and keeps what the periodic re-check needs.
 */
export class GrantChecker {
  private readonly users: UserRepository;
  private readonly creds: CredentialRepository;

  constructor(private readonly deps: { auth: AuthService; database: Database; clock: Clock }) {
    this.users = new UserRepository(deps.database.db);
    this.creds = new CredentialRepository(deps.database.db);
  }

  /** Throws the auth service's GatewayError (401) for a bad credential. */
  async authenticate(header: string | undefined): Promise<StreamGrant> {
    const principal = await this.deps.auth.authenticate(header);
    if (principal.via === 'jwt') {
      const { exp, iatMs } = tokenTimes(header!.slice(header!.indexOf(' ') + 1).trim());
      return { principal, expiresAt: exp, issuedAtMs: iatMs };
    }
    const key = principal.apiKeyId ? await this.creds.findApiKey(principal.apiKeyId) : undefined;
    return { principal, expiresAt: key?.expires_at ?? null, issuedAtMs: null };
  }

  /**
   * Why a grant no longer holds (the error code a 401 would carry), or null
   * when it still does. Cheap enough to run every few seconds: one user row
   * and at most one key or sign-in row, and callers share the answer between
   * the connections of one grant.
   */
  async revoked(grant: StreamGrant): Promise<ErrorCode | null> {
    const now = this.deps.clock.now();
    const p = grant.principal;
    if (grant.expiresAt !== null && grant.expiresAt <= now) return p.via === 'jwt' ? 'TOKEN_EXPIRED' : 'API_KEY_EXPIRED';
    const user = await this.users.findById(p.userId);
    if (!user) return 'INVALID_TOKEN';
    if (user.status !== 'active') return 'ACCOUNT_SUSPENDED';
    if (grant.issuedAtMs !== null && grant.issuedAtMs < Number(user.tokens_not_before)) return 'INVALID_TOKEN';
    // The sign-in of the access token (its `sid`) was ended: logout, refresh-token reuse, MFA enabled from another sign-in.
    if (p.signInId && !(await this.creds.isSignInLive(p.userId, p.signInId))) return 'INVALID_TOKEN';
    if (p.apiKeyId) {
      const key = await this.creds.findApiKey(p.apiKeyId);
      if (!key) return 'INVALID_TOKEN';
      if (key.revoked_at !== null) return 'API_KEY_REVOKED';
      if (key.expires_at !== null && key.expires_at <= now) return 'API_KEY_EXPIRED';
    }
    return null;
  }
}

/** Identifies the credential behind a grant, so connections sharing one are re-checked once. */
export const grantKey = (g: StreamGrant): string => `${g.principal.userId}|${g.principal.apiKeyId ?? ''}|${g.expiresAt ?? ''}|${g.issuedAtMs ?? ''}|${g.principal.signInId ?? ''}`;

export const isGatewayError = (err: unknown): err is GatewayError => err instanceof GatewayError;
