import { expect } from 'chai';
import { authorize, requestIdOf, userAgentOf } from '../../daemon/http/edge.js';
import type { Principal } from '../../daemon/auth/principal.js';
import { GatewayError } from '../../daemon/errors.js';

const member: Principal = {
  userId: 'usr_1',
  tenantId: null,
  email: 'a@example.test',
  role: 'member',
  tier: 'individual',
  scopes: ['credits:read'],
  via: 'api_key',
  apiKeyId: 'key_1',
  apiKeyRateLimitPerHour: 1000,
};

const codeOf = (f: () => void): string | null => {
  try {
    f();
    return null;
  } catch (err) {
    return err instanceof GatewayError ? err.code : 'not a GatewayError';
  }
};

describe('the edge (daemon/http/edge.ts)', () => {
  it('keeps a well-formed X-Request-Id and replaces anything else', () => {
    expect(requestIdOf('client-trace-0001')).to.equal('client-trace-0001');
    for (const bad of [
      undefined,
      '',
      'short',
      'has space inside',
      '-leading-dash',
      'x'.repeat(129),
      ['a-b-c-d-e-f', 'g-h-i-j-k-l'],
      'new\nline-header',
    ]) {
      expect(requestIdOf(bad as string)).to.match(/^req_/);
    }
  });

  it('bounds the user agent at 256 characters', () => {
    expect(userAgentOf(undefined)).to.equal(null);
    expect(userAgentOf('x'.repeat(300))).to.have.length(256);
  });

  it('authorize: a token type, then the scope, then the policy, as a route spec says', () => {
    expect(codeOf(() => authorize(member, { auth: 'bearer' }))).to.equal('FORBIDDEN');
    expect(codeOf(() => authorize(member, { auth: 'any', scope: 'sessions:read' }))).to.equal('INSUFFICIENT_SCOPE');
    expect(codeOf(() => authorize(member, { auth: 'any', scope: 'credits:read' }))).to.equal(null);
  });
});
