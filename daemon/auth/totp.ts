import { randomBytes } from 'node:crypto';
import { generateSecret, generateSync, generateURI, verifySync } from 'otplib';

/** RFC 6238: SHA1, 6 digits, 30 s steps, one step of tolerance either side. */
const PERIOD = 30;

export function newTotpSecret(): string {
  return generateSecret({ length: 20 });
}

export function totpUri(secret: string, account: string, issuer: string): string {
  return generateURI({ issuer, label: account, secret, algorithm: 'sha1', digits: 6, period: PERIOD });
}

/** The current code; used by tests and nothing else in the daemon. */
export function totpNow(secret: string, nowMs: number): string {
  return generateSync({ secret, epoch: Math.floor(nowMs / 1000), period: PERIOD, digits: 6, algorithm: 'sha1' });
}

/**
 * Checks a code and returns its time step, or null. The caller stores the step
 * and refuses any code of the same or an older step (no replay).
 */
export function checkTotp(secret: string, code: string, nowMs: number): number | null {
  if (!/^\d{6}$/.test(code)) return null;
  const r = verifySync({
    secret,
    token: code,
    epoch: Math.floor(nowMs / 1000),
    epochTolerance: PERIOD,
    period: PERIOD,
    digits: 6,
    algorithm: 'sha1',
  });
  return r.valid ? ((r as { timeStep?: number }).timeStep ?? null) : null;
}

/** Ten single-use recovery codes like `k3m9x-2q7dp` (50 bits each). */
export function newRecoveryCodes(count = 10): string[] {
  const alphabet = '0123456789abcdefghjkmnpqrstvwxyz';
  return Array.from({ length: count }, () => {
    const bytes = randomBytes(10);
    const chars = [...bytes].map((b) => alphabet[b % 32]).join('');
    return `${chars.slice(0, 5)}-${chars.slice(5, 10)}`;
  });
}

/** Recovery codes are compared in one canonical form: lower case, no spaces. */
export const canonicalRecoveryCode = (code: string): string => code.trim().toLowerCase().replace(/\s+/g, '');
