import type { AuthService } from '../../auth/auth-service.js';
import { presentUser } from '../../auth/presenters.js';
import type { UserAdminService } from '../../users/user-admin.js';
import { clientOf, principalOf } from '../middleware/authenticate.js';
import { presentMfaEnabled, presentMfaEnrolment, presentSignedIn, presentSignOut } from '../presenters/auth.js';
import { defineRoute, defineRoutes } from '../routes.js';

export function authRoutes(deps: { auth: AuthService; users: UserAdminService }) {
  const { auth, users } = deps;
  return defineRoutes([
    defineRoute({
      method: 'POST',
      path: '/v1/auth/login',
      summary: 'Sign in with email and password (and a TOTP or recovery code when MFA is on).',
      tag: 'auth',
      auth: 'none',
      body: 'LoginRequest',
      response: { status: 200, schema: 'LoginResponse' },
      errors: [
        'INVALID_CREDENTIALS',
        'MFA_REQUIRED',
        'INVALID_MFA',
        'MFA_UNAVAILABLE',
        'ACCOUNT_SUSPENDED',
        'LOGIN_THROTTLED',
        'UNAVAILABLE',
      ],
      handler: async (ctx) => {
        const b = ctx.request.body;
        return presentSignedIn(await auth.login(b, clientOf(ctx)));
      },
    }),
    defineRoute({
      method: 'POST',
      path: '/v1/auth/refresh',
      summary: 'Trade a refresh token for a new pair; the old one dies. A reused token revokes its family.',
      tag: 'auth',
      auth: 'none',
      body: 'RefreshRequest',
      response: { status: 200, schema: 'RefreshResponse' },
      errors: ['INVALID_TOKEN', 'TOKEN_EXPIRED', 'REFRESH_TOKEN_REUSED', 'ACCOUNT_SUSPENDED'],
      handler: async (ctx) => {
        return auth.refresh(ctx.request.body.refresh_token, clientOf(ctx));
      },
    }),
    defineRoute({
      method: 'POST',
      path: '/v1/auth/logout',
      summary: 'Revoke the refresh token family of this sign-in; its access tokens are refused at once.',
      tag: 'auth',
      auth: 'bearer',
      body: 'RefreshRequest',
      response: { status: 200, schema: 'OkResponse' },
      errors: ['INVALID_TOKEN', 'FORBIDDEN'],
      handler: async (ctx) => {
        await auth.logout(principalOf(ctx), ctx.request.body.refresh_token, clientOf(ctx));
        return {};
      },
    }),
    defineRoute({
      method: 'POST',
      path: '/v1/auth/logout-all',
      summary:
        'Sign out everywhere: every refresh token revoked, every access token issued so far refused; lists the API keys still live (revoke_api_keys revokes them).',
      tag: 'auth',
      auth: 'bearer',
      body: 'LogoutAllRequest',
      bodyOptional: true,
      response: { status: 200, schema: 'SignOutResponse' },
      errors: ['FORBIDDEN'],
      handler: async (ctx) => {
        const b = ctx.request.body ?? {};
        const revokeApiKeys = b.revoke_api_keys === true;
        return presentSignOut(await auth.logoutEverywhere(principalOf(ctx), clientOf(ctx), { revokeApiKeys }));
      },
    }),
    defineRoute({
      method: 'POST',
      path: '/v1/auth/password',
      summary: 'Change the password; ends every session; lists the API keys still live (revoke_api_keys revokes them).',
      tag: 'auth',
      auth: 'bearer',
      body: 'PasswordChangeRequest',
      response: { status: 200, schema: 'SignOutResponse' },
      errors: ['INVALID_CREDENTIALS', 'FORBIDDEN', 'LOGIN_THROTTLED', 'UNAVAILABLE'],
      handler: async (ctx) => {
        const b = ctx.request.body;
        const options = { revokeApiKeys: b.revoke_api_keys === true };
        const keys = await auth.changePassword(
          principalOf(ctx),
          b.current_password,
          b.new_password,
          clientOf(ctx),
          options,
        );
        return presentSignOut(keys);
      },
    }),
    defineRoute({
      method: 'POST',
      path: '/v1/auth/mfa/setup',
      summary: 'Start TOTP enrolment: a secret and an otpauth:// URL for an authenticator app.',
      tag: 'auth',
      auth: 'bearer',
      response: { status: 200, schema: 'MfaSetupResponse' },
      errors: ['INVALID_STATE', 'FORBIDDEN'],
      handler: async (ctx) => {
        return presentMfaEnrolment(await auth.mfaSetup(principalOf(ctx), clientOf(ctx)));
      },
    }),
    defineRoute({
      method: 'POST',
      path: '/v1/auth/mfa/enable',
      summary:
        'Finish enrolment with a current code; returns 10 single-use recovery codes, once. Ends every other sign-in.',
      tag: 'auth',
      auth: 'bearer',
      body: 'MfaTokenRequest',
      response: { status: 200, schema: 'MfaEnableResponse' },
      errors: ['INVALID_MFA', 'INVALID_STATE', 'FORBIDDEN'],
      handler: async (ctx) => {
        return presentMfaEnabled(await auth.mfaEnable(principalOf(ctx), ctx.request.body.token, clientOf(ctx)));
      },
    }),
    defineRoute({
      method: 'POST',
      path: '/v1/auth/mfa/disable',
      summary: 'Turn MFA off with a current code or a recovery code.',
      tag: 'auth',
      auth: 'bearer',
      body: 'MfaTokenRequest',
      response: { status: 200, schema: 'OkResponse' },
      errors: ['INVALID_MFA', 'MFA_UNAVAILABLE', 'INVALID_STATE', 'FORBIDDEN', 'LOGIN_THROTTLED', 'UNAVAILABLE'],
      handler: async (ctx) => {
        await auth.mfaDisable(principalOf(ctx), ctx.request.body.token, clientOf(ctx));
        return {};
      },
    }),
    defineRoute({
      method: 'GET',
      path: '/v1/me',
      summary: 'The authenticated user, without secrets, and the scopes of this credential.',
      tag: 'auth',
      auth: 'any',
      response: { status: 200, schema: 'MeResponse' },
      handler: async (ctx) => {
        const p = principalOf(ctx);
        return { user: presentUser(await users.ownUser(p)), scopes: p.scopes, auth: p.via, api_key_id: p.apiKeyId };
      },
    }),
  ]);
}
