import type { CredentialGrant } from '../auth/auth-service.js';

/**
 * What a stream connection was opened with: the principal, plus what can end
 * its right to stay open. Made and re-checked by the auth service
 * (`AuthService.grant`, `AuthService.grantEnded`) through the edge; a grant holds
 * no secret, so it can sit in a ticket in Redis.
 */
export type StreamGrant = CredentialGrant;

/** Identifies the credential behind a grant, so connections sharing one are re-checked once. */
export const grantKey = (g: StreamGrant): string => {
  const p = g.principal;
  return [p.userId, p.apiKeyId, g.expiresAt, g.issuedAtMs, p.signInId, g.secretHash].map((x) => x ?? '').join('|');
};
