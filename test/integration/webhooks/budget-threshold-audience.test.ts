import { expect } from 'chai';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildTenant, buildUser, mintToken, platformAdmin } from '../../helpers/factories.js';
import { execute, grant, waitForEnd } from '../../helpers/sessions.js';
import { Receiver } from './support.js';

// budget.threshold goes to the budget's people (docs/webhooks.md): a tenant budget to the tenant's admins.
describeStorage('budget.threshold of a tenant budget: to the tenant admins only', (backend) => {
  let d: TestDaemon;
  let receiver: Receiver;
  before(async () => {
    d = await startDaemon({ backend, config: { webhooks: { allow_private_targets: true } } });
    receiver = await Receiver.start((_req, res) => res.end('ok'));
  });
  after(async () => {
    await receiver?.close();
    await d?.stop();
  });

  const received = (path: string) => receiver.received.filter((r) => r.path === path).map((r) => JSON.parse(r.body));

  it('a member spending past 80% of the tenant budget: its admins are told, no one else', async () => {
    const tenant = await buildTenant(d);
    const other = await buildTenant(d);
    const tadmin = await buildUser(d, { role: 'admin', tenantId: tenant });
    const member = await buildUser(d, { tier: 'team', tenantId: tenant });
    const stranger = await buildUser(d, { role: 'admin', tenantId: other });
    for (const [u, path] of [
      [tadmin, '/admin'],
      [member, '/member'],
      [stranger, '/stranger'],
    ] as const) {
      const ep = await d.api.post(
        '/v1/webhooks/endpoints',
        { url: receiver.url(path), event_types: ['budget.threshold'] },
        { token: u.token },
      );
      expect(ep.status, ep.text).to.equal(201);
    }
    const admin = mintToken(d, await platformAdmin(d));
    const set = await d.api.put(`/v1/admin/tenants/${tenant}/budget`, { amount: 1.2, period: 'day' }, { token: admin });
    expect(set.status, set.text).to.equal(200);
    await grant(d, member, 5);
    const r = await execute(d, member, 'Spend a little [iterations:3]', { costBudget: 1 });
    expect(r.status, r.text).to.equal(200);
    await waitForEnd(d, member, r.body.session.id);
    await d.container.webhooks.deliverDueNow();
    const toAdmin = received('/admin');
    expect(toAdmin.map((m) => m.type)).to.include('budget.threshold');
    expect(toAdmin.find((m) => m.type === 'budget.threshold').data.budget).to.include({
      subject: 'tenant',
      id: tenant,
    });
    expect(received('/member')).to.deep.equal([]);
    expect(received('/stranger')).to.deep.equal([]);
  });
});
