import type { AuthService } from '../../auth/auth-service.js';
import { presentUser } from '../../auth/presenters.js';
import type { UserAdminService } from '../../users/user-admin.js';
import { bodyOf } from '../context.js';
import { clientOf, principalOf } from '../middleware/authenticate.js';
import { defineRoutes } from '../routes.js';


export function authRoutes(deps: { auth: AuthService; users: UserAdminService }) {
  const { auth, users } = deps;
  return defineRoutes([
    {
      method: 'POST',
      path: '/v1/auth/login',
      summary: 'Sign in with email and password (and a TOTP or recovery code when MFA is on).',
      tag: 'auth',
      auth: 'none',
      body: 'LoginRequest',
      response: { status: 200, schema: 'LoginResponse' },
      errors: ['INVALID_CREDENTIALS', 'MFA_REQUIRED', 'INVALID_MFA', 'ACCOUNT_SUSPENDED', 'LOGIN_THROTTLED', 'UNAVAILABLE'],
      handler: async (ctx) => {
        const b = bodyOf<{ email: string; password: string; mfa_token?: string }>(ctx);
        ctx.body = { success: true, ...(await auth.login(b, clientOf(ctx))) };
      },
    },
    {
      method: 'POST',
      path: '/v1/auth/refresh',
      summary: 'Trade a refresh token for a new pair; the old one dies. A reused token revokes its family.',
      tag: 'auth',
      auth: 'none',
      body: 'RefreshRequest',
      response: { status: 200, schema: 'RefreshResponse' },
      errors: ['INVALID_TOKEN', 'TOKEN_EXPIRED', 'REFRESH_TOKEN_REUSED', 'ACCOUNT_SUSPENDED'],
      handler: async (ctx) => {
        ctx.body = { success: true, ...(await auth.refresh(bodyOf<{ refresh_token: string }>(ctx).refresh_token, clientOf(ctx))) };
      },
    },
    {
      method: 'POST',
      path: '/v1/auth/logout',
      summary: 'Revoke the refresh token family of this sign-in.',
      tag: 'auth',
      auth: 'bearer',
      body: 'RefreshRequest',
      response: { status: 200, schema: 'OkResponse' },
      errors: ['INVALID_TOKEN', 'FORBIDDEN'],
      handler: async (ctx) => {
        await auth.logout(principalOf(ctx), bodyOf<{ refresh_token: string }>(ctx).refresh_token, clientOf(ctx));
        ctx.body = { success: true };
      },
    },
    {
      method: 'POST',
      path: '/v1/auth/logout-all',
      summary: 'Sign out everywhere: every refresh token revoked, every access token issued so far refused.',
      tag: 'auth',
      auth: 'bearer',
      response: { status: 200, schema: 'OkResponse' },
      errors: ['FORBIDDEN'],
      handler: async (ctx) => {
        await auth.logoutEverywhere(principalOf(ctx), clientOf(ctx));
        ctx.body = { success: true };
      },
    },
    {
      method: 'POST',
      path: '/v1/auth/password',
      summary: 'Change the password; ends every other session.',
      tag: 'auth',
      auth: 'bearer',
      body: 'PasswordChangeRequest',
      response: { status: 200, schema: 'OkResponse' },
      errors: ['INVALID_CREDENTIALS', 'FORBIDDEN'],
      handler: async (ctx) => {
        const b = bodyOf<{ current_password: string; new_password: string }>(ctx);
        await auth.changePassword(principalOf(ctx), b.current_password, b.new_password, clientOf(ctx));
        ctx.body = { success: true };
      },
    },
    {
      method: 'POST',
      path: '/v1/auth/mfa/setup',
      summary: 'Start TOTP enrolment: a secret and an otpauth:// URL for an authenticator app.',
      tag: 'auth',
      auth: 'bearer',
      response: { status: 200, schema: 'MfaSetupResponse' },
      errors: ['INVALID_STATE', 'FORBIDDEN'],
      handler: async (ctx) => {
        ctx.body = { success: true, ...(await auth.mfaSetup(principalOf(ctx), clientOf(ctx))) };
      },
    },
    {
      method: 'POST',
      path: '/v1/auth/mfa/enable',
      summary: 'Finish enrolment with a current code; returns 10 single-use recovery codes, once.',
      tag: 'auth',
      auth: 'bearer',
      body: 'MfaTokenRequest',
      response: { status: 200, schema: 'MfaEnableResponse' },
      errors: ['INVALID_MFA', 'INVALID_STATE', 'FORBIDDEN'],
      handler: async (ctx) => {
        ctx.body = { success: true, ...(await auth.mfaEnable(principalOf(ctx), bodyOf<{ token: string }>(ctx).token, clientOf(ctx))) };
      },
    },
    {
      method: 'POST',
      path: '/v1/auth/mfa/disable',
      summary: 'Turn MFA off with a current code or a recovery code.',
      tag: 'auth',
      auth: 'bearer',
      body: 'MfaTokenRequest',
      response: { status: 200, schema: 'OkResponse' },
      errors: ['INVALID_MFA', 'INVALID_STATE', 'FORBIDDEN'],
      handler: async (ctx) => {
        await auth.mfaDisable(principalOf(ctx), bodyOf<{ token: string }>(ctx).token, clientOf(ctx));
        ctx.body = { success: true };
      },
    },
    {
      method: 'GET',
      path: '/v1/me',
      summary: 'The authenticated user, without secrets, and the scopes of this credential.',
      tag: 'auth',
      auth: 'any',
      response: { status: 200, schema: 'MeResponse' },
      handler: async (ctx) => {
        const p = principalOf(ctx);
        ctx.body = { success: true, user: presentUser(await users.ownUser(p)), scopes: p.scopes, auth: p.via, api_key_id: p.apiKeyId };
      },
    },
  ]);
}
