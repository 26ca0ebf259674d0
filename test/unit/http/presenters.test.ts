import { expect } from 'chai';
import type { ApiKeysAfterSignOut } from '../../../daemon/auth/auth-service.js';
import type { BudgetStatus } from '../../../daemon/credits/budgets.js';
import { toMicros } from '../../../daemon/credits/money.js';
import { presentMfaEnabled, presentSignOut } from '../../../daemon/http/presenters/auth.js';
import { presentQuote } from '../../../daemon/http/presenters/sessions.js';
import type { Quote } from '../../../daemon/sessions/session-service.js';
import type { ApiKeyRow } from '../../../daemon/storage/repos/credentials.js';

const T0 = Date.parse('2026-01-05T00:00:00.000Z');
const M = (credits: number) => toMicros(credits * 1_000_000);

const budget: BudgetStatus = {
  subject: 'api_key',
  subjectId: 'key_1',
  tenantId: null,
  amount: M(5),
  period: 'day',
  setBy: 'owner',
  createdAt: T0,
  updatedAt: T0,
  windowStart: T0,
  resetsAt: T0 + 86_400_000,
  used: M(4.5),
  remaining: M(0.5),
};

/**
 * Services return domain values (micros, epoch ms, rows); the presenters of daemon/http/presenters/
 * make the wire JSON, with the field order docs/API.md shows.
 */
describe('presenters at the edge (daemon/http/presenters/)', () => {
  it('presentQuote: credits in decimal, each reason as the API answers it, budgets as Budget', () => {
    const q: Quote = {
      estimate: M(1.25),
      reservation: M(2),
      available: M(1),
      budgets: [budget],
      reasons: [
        { limit: 'concurrent_sessions', current: 3, max: 3, retryAfterSeconds: 5 },
        { limit: 'credits', current: M(1), max: M(2) },
        { limit: 'budget', current: M(0.5), max: M(2), budget, retryAfterSeconds: 60 },
        {
          limit: 'budget',
          current: M(0.5),
          max: M(2),
          budget: { ...budget, period: 'total', resetsAt: null },
          retryAfterSeconds: null,
        },
      ],
    };
    const wire = {
      subject: 'api_key',
      id: 'key_1',
      amount: 5,
      period: 'day',
      used: 4.5,
      remaining: 0.5,
      period_start: '2026-01-05T00:00:00.000Z',
      resets_at: '2026-01-06T00:00:00.000Z',
      set_by: 'owner',
    };
    const total = { ...wire, period: 'total', period_start: null, resets_at: null };
    const expected = {
      estimated_cost: 1.25,
      reservation: 2,
      available: 1,
      budgets: [wire],
      admission: {
        allowed: false,
        reasons: [
          { limit: 'concurrent_sessions', current: 3, max: 3, retry_after: 5 },
          { limit: 'credits', current: 1, max: 2 },
          { limit: 'budget', current: 0.5, max: 2, budget: wire, retry_after: 60 },
          { limit: 'budget', current: 0.5, max: 2, budget: total },
        ],
      },
    };
    // Same keys in the same order: the bytes on the wire do not change.
    expect(JSON.stringify(presentQuote(q))).to.equal(JSON.stringify(expected));
    expect(presentQuote({ ...q, reasons: [] }).admission).to.deep.equal({ allowed: true, reasons: [] });
  });

  it('presentSignOut: key rows as ApiKey, their status told at the time of the call, never a hash', () => {
    const row = (id: string, revokedAt: number | null): ApiKeyRow =>
      ({
        id,
        user_id: 'usr_1',
        tenant_id: null,
        name: id,
        key_prefix: 'ak_live_abcd',
        key_hash: 'h'.repeat(64),
        previous_key_hash: null,
        previous_expires_at: null,
        scopes: '["credits:read"]',
        rate_limit_per_hour: 100,
        expires_at: null,
        last_used_at: null,
        revoked_at: revokedAt,
        rolled_at: null,
        created_at: T0,
      }) as ApiKeyRow;
    const v: ApiKeysAfterSignOut = { live: [row('k1', null)], revoked: [row('k2', T0 + 1)], at: T0 + 1 };
    const out = presentSignOut(v);
    expect(Object.keys(out)).to.deep.equal(['api_keys', 'revoked_api_keys']);
    expect(out.api_keys.map((k) => [k.id, k.status])).to.deep.equal([['k1', 'active']]);
    expect(out.revoked_api_keys.map((k) => [k.id, k.status, k.revoked_at])).to.deep.equal([
      ['k2', 'revoked', '2026-01-05T00:00:00.001Z'],
    ]);
    expect(JSON.stringify(out)).to.not.include('hhhh');
  });

  it('presentMfaEnabled: snake_case on the wire, the codes as given', () => {
    const codes = Array.from({ length: 10 }, (_, i) => `aaaaa-${String(i).padStart(5, '0')}`);
    const out = presentMfaEnabled({ recoveryCodes: codes, revokedSignIns: 2, signInAgain: false });
    expect(out).to.deep.equal({ recovery_codes: codes, revoked_sign_ins: 2, sign_in_again: false });
  });
});
