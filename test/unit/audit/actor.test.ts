import { expect } from 'chai';
import { accountActor, actorOf, auditContext } from '../../../daemon/audit/actor.js';
import type { Principal } from '../../../daemon/auth/principal.js';

const user: Principal = {
  userId: 'usr_1',
  tenantId: null,
  email: 'a@example.test',
  role: 'tenant_admin',
  tier: 'team',
  scopes: ['admin'],
  via: 'jwt',
  apiKeyId: null,
  apiKeyRateLimitPerHour: null,
};
const key: Principal = { ...user, via: 'api_key', apiKeyId: 'key_1', apiKeyRateLimitPerHour: 1000 };

describe('audit actor (daemon/audit/actor.ts)', () => {
  it('actorOf: the credential decides; an administrator acting on what is not theirs is admin', () => {
    expect(actorOf(user)).to.deep.equal({ type: 'user', id: 'usr_1' });
    expect(actorOf(user, { asAdmin: true })).to.deep.equal({ type: 'admin', id: 'usr_1' });
    expect(actorOf(key)).to.deep.equal({ type: 'api_key', id: 'key_1' });
    // An API key stays the actor even with administrator reach: the entry names the credential used.
    expect(actorOf(key, { asAdmin: true })).to.deep.equal({ type: 'api_key', id: 'key_1' });
    expect(actorOf(null)).to.deep.equal({ type: 'system', id: null });
  });

  it('accountActor: the person behind any credential (user and key management)', () => {
    expect(accountActor(key, true)).to.deep.equal({ type: 'admin', id: 'usr_1' });
    expect(accountActor(key, false)).to.deep.equal({ type: 'user', id: 'usr_1' });
    expect(accountActor(user, false)).to.deep.equal({ type: 'user', id: 'usr_1' });
    expect(accountActor(null, true)).to.deep.equal({ type: 'system', id: null });
  });

  it('auditContext: the edge client info, or nulls', () => {
    expect(auditContext({ ip: '10.0.0.1', userAgent: 'ua', requestId: 'req_1' })).to.deep.equal({
      ip: '10.0.0.1',
      userAgent: 'ua',
      requestId: 'req_1',
    });
    expect(auditContext(undefined)).to.deep.equal({ ip: null, userAgent: null, requestId: null });
  });
});
