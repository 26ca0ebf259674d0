import { expect } from 'chai';
import { verifySignature } from '../../../daemon/webhooks/signing.js';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildUser } from '../../helpers/factories.js';
import { execute, grant, waitForEnd } from '../../helpers/sessions.js';
import { signatureHeaders, webhookReceiver as receiver } from '../../helpers/webhooks.js';

describeStorage('session webhooks', (backend) => {
  it("POSTs the final session event, signed with the user's secret, committed with the session's end", async () => {
    const d = await startDaemon({ backend, config: { webhooks: { allow_private_targets: true } } });
    const hook = await receiver();
    try {
      const u = await buildUser(d, { tier: 'team' });
      await grant(d, u, 5);
      const r = await execute(d, u, 'Tell me when you are done', { costBudget: 1 }, { webhook_url: hook.url });
      expect(r.status, r.text).to.equal(200);
      const end = await waitForEnd(d, u, r.body.session.id);
      await d.container.webhooks.deliverDueNow();
      expect(hook.received).to.have.length(1);
      const got = hook.received[0]!;
      const payload = JSON.parse(got.body);
      expect(payload.type).to.equal('session.completed');
      expect(payload.data).to.include({ id: end.id, status: 'completed', final_cost: end.final_cost });
      const secret = (await d.api.get('/v1/webhooks/secret', { token: u.token })).body.secret;
      expect(secret).to.match(/^whsec_/);
      const headers = signatureHeaders(got);
      expect(verifySignature(secret, headers, got.body)).to.equal(true);
      expect(verifySignature(secret, headers, got.body.replace('completed', 'failed'))).to.equal(false);
      const other = (await d.api.get('/v1/webhooks/secret', { token: (await buildUser(d)).token })).body.secret;
      expect(verifySignature(other, headers, got.body)).to.equal(false);
      const row = await d.container.database.db
        .selectFrom('webhook_deliveries')
        .selectAll()
        .where('session_id', '=', end.id)
        .executeTakeFirstOrThrow();
      expect(row.status).to.equal('delivered');
    } finally {
      await hook.close();
      await d.stop();
    }
  });

  it('refuses private and link-local targets at execute, and a name resolving to one at delivery', async () => {
    const d = await startDaemon({ backend, config: { webhooks: { allow_private_targets: false } } });
    try {
      const u = await buildUser(d, { tier: 'team' });
      await grant(d, u, 5);
      for (const url of [
        'http://example.com/hook',
        'https://127.0.0.1/hook',
        'https://10.0.0.1/hook',
        'https://169.254.169.254/latest/meta-data',
        'https://[::1]/hook',
        'https://[::ffff:127.0.0.1]/x',
        'https://user:pw@example.com/x',
        'not a url',
      ]) {
        const r = await execute(d, u, 'A run with a hostile webhook', { costBudget: 1 }, { webhook_url: url });
        expect(r.status, url).to.equal(400);
        expect(
          r.body.error.details.map((x: { field: string }) => x.field),
          url,
        ).to.include('webhook_url');
      }
      expect(
        (await d.container.database.db.selectFrom('sessions').select('id').where('user_id', '=', u.user.id).execute())
          .length,
      ).to.equal(0);
      const r = await execute(
        d,
        u,
        'A webhook whose name resolves to loopback',
        { costBudget: 1 },
        { webhook_url: 'https://localhost:9/hook' },
      );
      expect(r.status, r.text).to.equal(200);
      await waitForEnd(d, u, r.body.session.id);
      await d.container.webhooks.deliverDueNow();
      const row = await d.container.database.db
        .selectFrom('webhook_deliveries')
        .selectAll()
        .where('session_id', '=', r.body.session.id)
        .executeTakeFirstOrThrow();
      expect(row.status).to.equal('failed');
      expect(row.last_error).to.match(/refused|forbidden|private|loopback/i);
    } finally {
      await d.stop();
    }
  });
});
