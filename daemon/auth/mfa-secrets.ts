import type { UserRepository } from '../storage/repos/users.js';
import { SecretBox } from './secret-box.js';

/** The HKDF purpose the TOTP secrets are sealed under (daemon/container.ts). */
export const TOTP_SECRET_PURPOSE = 'totp-secrets';

export interface MfaSecretsReport {
  /** Users with a sealed TOTP secret (enabled, or pending enrolment). */
  sealed: number;
  /** Sealed under a JWT_PREVIOUS_SECRETS entry: the daemon re-seals them at its next start. */
  previous: number;
  /** Ids of the users whose secret opens with no configured secret: they need `keen-admin users reset-mfa`. */
  unreadable: string[];
}

/**
 * Tries every sealed TOTP secret against the configured server secrets, as the
 * daemon would (`keen-admin doctor`; the daemon's own start-up count is
 * AuthService.resealSecrets). Reads only.
 */
export async function inspectMfaSecrets(
  users: UserRepository,
  current: Buffer,
  previous: Buffer[],
): Promise<MfaSecretsReport> {
  const box = new SecretBox(current, TOTP_SECRET_PURPOSE, previous);
  const report: MfaSecretsReport = { sealed: 0, previous: 0, unreadable: [] };
  for (const row of await users.listSealedMfaSecrets()) {
    report.sealed++;
    const opens = box.opens(row.mfa_secret_enc);
    if (opens === 'previous') report.previous++;
    else if (opens === null) report.unreadable.push(row.id);
  }
  return report;
}
