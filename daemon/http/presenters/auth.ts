import type { ApiKey, TokenPair, User } from '../../../schemas/types.gen.js';
import type { ApiKeysAfterSignOut, MfaEnabled, MfaEnrolment, SignedIn } from '../../auth/auth-service.js';
import { presentApiKey, presentUser } from '../../auth/presenters.js';
import type { Payload } from '../routes.js';

/**
 * The presenters of what AuthService returns for the sign-in routes: rows become the
 * wire JSON here, at the edge (never a hash, a secret or an internal counter).
 */

/** `POST /v1/auth/login`: the user as it is now and the new token pair. */
export const presentSignedIn = (r: SignedIn): { user: User; tokens: TokenPair } => ({
  user: presentUser(r.user),
  tokens: r.tokens,
});

/** Logout-all and a password change: the API keys still live, and the ones the call revoked. */
export const presentSignOut = (v: ApiKeysAfterSignOut): { api_keys: ApiKey[]; revoked_api_keys: ApiKey[] } => ({
  api_keys: v.live.map((k) => presentApiKey(k, v.at)),
  revoked_api_keys: v.revoked.map((k) => presentApiKey(k, v.at)),
});

/** `POST /v1/auth/mfa/setup`. */
export const presentMfaEnrolment = (e: MfaEnrolment): Payload<'MfaSetupResponse'> => ({
  secret: e.secret,
  otpauth_url: e.otpauthUrl,
});

/** `POST /v1/auth/mfa/enable`: the recovery codes, once. */
export const presentMfaEnabled = (r: MfaEnabled): Payload<'MfaEnableResponse'> => ({
  // The schema pins exactly ten codes (MFA_RECOVERY_CODES); the service makes that many.
  recovery_codes: r.recoveryCodes as Payload<'MfaEnableResponse'>['recovery_codes'],
  revoked_sign_ins: r.revokedSignIns,
  sign_in_again: r.signInAgain,
});
