import { createSecretKey, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { setBounded } from '../bounded-map.js';
import { GatewayError } from '../errors.js';
import { newId } from '../ids.js';
import type { Clock } from '../clock.js';
import type { Role, Scope, Tier } from './principal.js';

/**
 * The claims of an access token. `iat_ms` carries the issue time in ms for the
 * per-user not-before check. `sid` names the sign-in the token belongs to (the
 * id of its refresh-token family): a revoked sign-in (logout, refresh-token
 * reuse, MFA enabled elsewhere) refuses its access tokens at once. Tokens
 * signed before sign-in ids have none and are accepted until they expire.
 */
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
  sid?: string;
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
  /** The key id in the header of every token signed here: derived from the secret, so every daemon with it agrees. */
  readonly kid: string;
  /** kid -> key, for the current secret and every rotated-out one still accepted. */
  private readonly keys = new Map<string, KeyObject>();
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
    private readonly options: {
      issuer: string;
      audience: string;
      ttlSeconds: number;
      clock: Clock;
      previousSecrets?: Buffer[];
    },
  ) {
    this.key = createSecretKey(secret);
    this.kid = keyId(secret);
    for (const old of options.previousSecrets ?? []) this.keys.set(keyId(old), createSecretKey(old));
    this.keys.set(this.kid, this.key);
  }

  get ttlSeconds(): number {
    return this.options.ttlSeconds;
  }

  /** `signInId`: the refresh-token family the token is issued for (the `sid` claim). */
  sign(user: {
    id: string;
    scopes: Scope[];
    tier: Tier;
    role: Role;
    tenantId: string | null;
    signInId?: string;
  }): string {
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
      ...(user.signInId !== undefined ? { sid: user.signInId } : {}),
    };
    return jwt.sign(claims, this.key, {
      algorithm: 'HS256',
      header: { alg: 'HS256', typ: ACCESS_TOKEN_TYPE, kid: this.kid },
    });
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
    setBounded(this.verified, token, claims, VERIFIED_CACHE_SIZE);
    return claims;
  }

  /**
   * The key a token names in its `kid`: the current secret's or a rotated-out
   * one's. A token without `kid` (signed before key ids) is checked against the
   * current secret only; an unknown `kid` is refused without trying any key.
   */
  private keyFor(token: string): KeyObject {
    let header: { kid?: unknown };
    try {
      header = JSON.parse(Buffer.from(token.slice(0, token.indexOf('.')), 'base64url').toString('utf8')) as {
        kid?: unknown;
      };
    } catch {
      throw new GatewayError('INVALID_TOKEN', 'access token is invalid');
    }
    if (header === null || typeof header !== 'object')
      throw new GatewayError('INVALID_TOKEN', 'access token is invalid');
    if (header.kid === undefined) return this.key;
    const key = typeof header.kid === 'string' ? this.keys.get(header.kid) : undefined;
    if (!key) throw new GatewayError('INVALID_TOKEN', 'access token is invalid');
    return key;
  }

  private check(token: string): AccessClaims {
    const key = this.keyFor(token);
    let decoded: jwt.Jwt;
    try {
      decoded = jwt.verify(token, key, {
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
      (p.sid !== undefined && typeof p.sid !== 'string') ||
      !Array.isArray(p.scopes)
    ) {
      throw new GatewayError('INVALID_TOKEN', 'access token is invalid');
    }
    Object.freeze(p.scopes);
    return Object.freeze(p) as AccessClaims;
  }
}

/** The `kid` of a secret: 9 bytes of HKDF-SHA256 of it, base64url; says nothing about the secret itself. */
export function keyId(secret: Buffer): string {
  return Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), 'keen-gateway:jwt-kid', 9)).toString('base64url');
}

/** An opaque refresh token: 32 random bytes. Only its sha256 is stored. */
export function generateRefreshToken(): string {
  return 'rt_' + randomBytes(32).toString('base64url');
}
