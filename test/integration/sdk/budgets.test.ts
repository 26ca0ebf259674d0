import { expect } from 'chai';
import { InsufficientCreditsError } from '../../../sdk/src/index.js';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildApiKey, buildUser, mintToken, platformAdmin } from '../../helpers/factories.js';
import { grant } from '../../helpers/sessions.js';
import { scriptedServer, sdk } from './support.js';

describeStorage('SDK: budgets, BUDGET_EXCEEDED, and a roll that is never retried', (backend) => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon({ backend });
  });
  after(async () => d?.stop());

  it('caps an own key, reads it back, and an execute over it throws InsufficientCreditsError with the budget', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 10);
    const key = await buildApiKey(d, u, { name: 'sdk' });
    const asUser = sdk(d, { accessToken: u.token });
    const set = await asUser.budgets.setForOwnKey(key.id, { amount: 0.5, period: 'day' });
    expect(set.budget).to.include({ subject: 'api_key', id: key.id, amount: 0.5, period: 'day' });
    expect((await asUser.budgets.mine()).budgets.map((b) => b.id)).to.include(key.id);
    const asKey = sdk(d, { apiKey: key.key });
    const err = await asKey.execute({ vision: 'More than the key may spend today', options: { costBudget: 1 } }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(InsufficientCreditsError);
    const e = err as InsufficientCreditsError;
    expect(e.code).to.equal('BUDGET_EXCEEDED');
    expect(e.budget).to.include({ subject: 'api_key', id: key.id, remaining: 0.5 });
    expect(e.budget!.resets_at).to.be.a('string');
    await asUser.budgets.removeFromOwnKey(key.id);
    expect((await asUser.budgets.mine()).budgets).to.deep.equal([]);
  });

  it('administrators set, list and remove budgets of users and tenants', async () => {
    const admin = sdk(d, { accessToken: mintToken(d, await platformAdmin(d)) });
    const u = await buildUser(d);
    await admin.budgets.set('user', u.email, { amount: 12, period: 'month' });
    const listed = [];
    for await (const b of admin.budgets.all({ subject: 'user' })) listed.push(b);
    expect(listed.map((b) => b.id)).to.include(u.user.id);
    await admin.budgets.remove('user', u.user.id);
    expect((await admin.budgets.list({ subject: 'user' })).budgets.map((b) => b.id)).not.to.include(u.user.id);
  });

  it('apiKeys.roll is sent once even when the answer is lost (a retry would end the kept secret)', async () => {
    const server = await scriptedServer((_req, res) => res.destroy());
    try {
      const client = sdk(server.url, { accessToken: 'x.y.z' }, { maxRetries: 3 });
      await client.apiKeys.roll('key_01jabc', { graceSeconds: 60 }).then(
        () => expect.fail('a lost answer must reject'),
        () => undefined,
      );
      expect(server.hits).to.equal(1);
      // Other POSTs are retried with the same idempotency key.
      await client.credits.balance().catch(() => undefined);
      expect(server.hits).to.be.greaterThan(2);
    } finally {
      await server.close();
    }
  });
});
