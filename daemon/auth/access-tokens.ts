import { createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { GatewayError } from '../errors.js';
import { newId } from '../ids.js';
import type { Clock } from '../clock.js';
import type { Role, Scope, Tier } from './principal.js';

/** The claims of an access token. `iat_ms` carries the issue time in ms for the per-user not-before check. */
export interface AccessClaims {
  sub: string;
  iss: string;
  aud: string;
  iat: number;
  exp: number;
  jti: string;
  iat_ms: number;
  scopes: Scope[];
  tier: Tier;
  role: Role;
  tid: string | null;
}

export const ACCESS_TOKEN_TYPE = 'at+jwt';

/** Tokens whose signature and claims were checked, kept so a client's next request skips the work. */
const VERIFIED_CACHE_SIZE = 10_000;

/**
 * HS256 access tokens (RFC 9068 shape). The secret is a KeyObject: jsonwebtoken
 * re-imports a string secret on every call, which costs an order of magnitude in
 * throughput. Verification pins the algorithm, issuer and audience, and checks
 * what jsonwebtoken leaves to the caller: `exp`, `iat` and `jti` present, and the
 * `typ` header `at+jwt`, so no other token we issue can pass as an access token.
 */
export class AccessTokens {
  private readonly key: KeyObject;
  /**
   * Token text -> its checked claims, oldest first. Verification is a pure
   * function of the text, the key and the clock, so a hit only re-checks `exp`
   * (a token's claims cannot change; revocation is decided per user after
   * this, from the database). Bounded, and only tokens that passed
   * verification are stored, so garbage cannot fill it.
   */
  private readonly verified = new Map<string, AccessClaims>();

  constructor(
    secret: Buffer,
    private readonly options: { issuer: string; audience: string; ttlSeconds: number; clock: Clock },
  ) {
    this.key = createSecretKey(secret);
  }

  get ttlSeconds(): number {
    return this.options.ttlSeconds;
  }

  sign(user: { id: string; scopes: Scope[]; tier: Tier; role: Role; tenantId: string | null }): string {
    const nowMs = this.options.clock.now();
    const iat = Math.floor(nowMs / 1000);
    const claims: AccessClaims = {
      sub: user.id,
      iss: this.options.issuer,
      aud: this.options.audience,
      iat,
      exp: iat + this.options.ttlSeconds,
      jti: newId('req', nowMs).replace(/^req_/, 'jti_'),
      iat_ms: nowMs,
      scopes: user.scopes,
      tier: user.tier,
      role: user.role,
      tid: user.tenantId,
    };
    return jwt.sign(claims, this.key, { algorithm: 'HS256', header: { alg: 'HS256', typ: ACCESS_TOKEN_TYPE } });
  }

  /** Verifies and returns the claims, or throws INVALID_TOKEN / TOKEN_EXPIRED. */
  verify(token: string): AccessClaims {
    const known = this.verified.get(token);
    if (known) {
      if (Math.floor(this.options.clock.now() / 1000) < known.exp) return known;
      this.verified.delete(token);
      throw new GatewayError('TOKEN_EXPIRED', 'access token has expired');
    }
    const claims = this.check(token);
    if (this.verified.size >= VERIFIED_CACHE_SIZE) this.verified.delete(this.verified.keys().next().value as string);
    this.verified.set(token, claims);
    return claims;
  }

  private check(token: string): AccessClaims {
    let decoded: jwt.Jwt;
    try {
      decoded = jwt.verify(token, this.key, {
        algorithms: ['HS256'],
        issuer: this.options.issuer,
        audience: this.options.audience,
        complete: true,
        clockTimestamp: Math.floor(this.options.clock.now() / 1000),
      }) as jwt.Jwt;
    } catch (err) {
      if (err instanceof jwt.TokenExpiredError) throw new GatewayError('TOKEN_EXPIRED', 'access token has expired');
      throw new GatewayError('INVALID_TOKEN', 'access token is invalid');
    }
    const header = decoded.header as jwt.JwtHeader & { typ?: string };
    const p = decoded.payload as Partial<AccessClaims>;
    if (
      header.typ !== ACCESS_TOKEN_TYPE ||
      typeof p.sub !== 'string' ||
      typeof p.exp !== 'number' ||
      typeof p.iat !== 'number' ||
      typeof p.jti !== 'string' ||
      typeof p.iat_ms !== 'number' ||
      !Array.isArray(p.scopes)
    ) {
      throw new GatewayError('INVALID_TOKEN', 'access token is invalid');
    }
    Object.freeze(p.scopes);
    return Object.freeze(p) as AccessClaims;
  }
}

/** An opaque refresh token: 32 random bytes. Only its sha256 is stored. */
export function generateRefreshToken(): string {
  return 'rt_' + randomBytes(32).toString('base64url');
}
