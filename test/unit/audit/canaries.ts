/** Secrets that must never reach the audit table: searched for in the stored rows. */
export const CANARY = {
  password: 'Canary-Passw0rd-7f3a9c',
  apiKey: 'ak_live_Cz4nAryK3yB0dyAbCdEfGhIjKlMnOpQrStUvWxYz0123456abc123',
  jwt: 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c3JfY2FuYXJ5IiwiaWF0IjoxNzAwMDAwMDAwfQ.c2lnbmF0dXJlLWNhbmFyeS12YWx1ZS0xMjM0NQ',
  refreshToken: 'rt_CanaryRefreshTok3n_abcdefghijklmnopqrstuvwxyz012',
  totpSecret: 'JBSWY3DPEHPK3PXPCANARYAAAA',
} as const;
