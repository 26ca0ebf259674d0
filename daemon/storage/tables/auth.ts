/** Tenants, users and their credentials (migration 0002_auth). Times are epoch milliseconds. */
export interface AuthTables {
  tenants: {
    id: string;
    name: string;
    created_at: number;
  };
  users: {
    id: string;
    tenant_id: string | null;
    /** Normalized: NFKC, trimmed, lower-cased. Unique. */
    email: string;
    /** argon2id PHC string; null for users who only use API keys. */
    password_hash: string | null;
    status: 'active' | 'suspended';
    /** Who suspended the user (migration 0009): a tenant admin cannot lift a platform admin's suspension. Null while active. */
    suspended_by_role: 'tenant_admin' | 'platform_admin' | null;
    tier: 'individual' | 'team' | 'enterprise';
    role: 'member' | 'tenant_admin' | 'platform_admin';
    mfa_enabled: number;
    /** AES-256-GCM ciphertext of the TOTP secret (key derived from the server secret). */
    mfa_secret_enc: string | null;
    /** The last TOTP time step accepted: a code is never accepted twice. */
    mfa_last_step: number | null;
    /** Access tokens issued before this instant (ms) are refused: logout-everywhere, password change, suspension. */
    tokens_not_before: number;
    created_at: number;
    updated_at: number;
    last_login_at: number | null;
  };
  refresh_tokens: {
    id: string;
    user_id: string;
    family_id: string;
    token_hash: string;
    status: 'active' | 'used' | 'revoked';
    expires_at: number;
    created_at: number;
    used_at: number | null;
  };
  recovery_codes: {
    id: string;
    user_id: string;
    code_hash: string;
    used_at: number | null;
    created_at: number;
  };
  api_keys: {
    id: string;
    user_id: string;
    tenant_id: string | null;
    name: string;
    key_hash: string;
    /** First characters of the key, for people to recognise it in lists. */
    key_prefix: string;
    /** JSON array of scopes. */
    scopes: string;
    rate_limit_per_hour: number;
    expires_at: number | null;
    revoked_at: number | null;
    last_used_at: number | null;
    created_at: number;
    /** The secret the key had before its last roll (migration 0012), accepted until `previous_expires_at`; null when none is kept. */
    previous_key_hash: string | null;
    previous_key_prefix: string | null;
    previous_expires_at: number | null;
    /** When the key was last rolled to a new secret. */
    rolled_at: number | null;
    /** When `api_key.expiring` was sent for it (0013); null before. */
    expiry_notified_at: number | null;
  };
}
