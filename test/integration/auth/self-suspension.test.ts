import { expect } from 'chai';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildTenant, buildUser, uniqueEmail } from '../../helpers/factories.js';

/**
 * An administrator cannot suspend itself, however it spells its own email:
 * the guard compares emails in the normalized form the lookup uses (NFKC,
 * trimmed, lower-cased), not the raw path parameter.
 */
describeStorage('an administrator cannot suspend itself by another spelling of its email', (backend) => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon({ backend });
  });
  after(async () => d?.stop());

  const fullwidth = (s: string) => s.replace(/[a-z]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0x61 + 0xff41));

  it('refuses upper case, surrounding spaces and fullwidth forms with 409 INVALID_STATE, and stays active', async () => {
    const admin = await buildUser(d, { role: 'admin', tier: 'enterprise', email: uniqueEmail('admina') });
    const [local, domain] = admin.email.split('@') as [string, string];
    const spellings = [
      admin.email,
      admin.user.id,
      admin.email.toUpperCase(),
      `  ${admin.email}  `,
      `\t${admin.email.toUpperCase()} `,
      `${fullwidth(local)}@${domain}`,
    ];
    for (const spelling of spellings) {
      const r = await d.api.post(`/v1/admin/users/${encodeURIComponent(spelling)}/suspend`, {}, { token: admin.token });
      expect(r.status, `${JSON.stringify(spelling)}: ${r.text}`).to.equal(409);
      expect(r.body.error.code).to.equal('INVALID_STATE');
      expect(r.body.error.message).to.include('yourself');
    }
    const me = await d.api.get('/v1/me', { token: admin.token });
    expect(me.status, me.text).to.equal(200);
    const row = await d.container.database.db
      .selectFrom('users')
      .select('status')
      .where('id', '=', admin.user.id)
      .executeTakeFirstOrThrow();
    expect(row.status).to.equal('active');
  });

  it('a tenant administrator neither', async () => {
    const tenantId = await buildTenant(d);
    const tadmin = await buildUser(d, { role: 'admin', tier: 'team', tenantId });
    expect(tadmin.user.role).to.equal('tenant_admin');
    const r = await d.api.post(
      `/v1/admin/users/${encodeURIComponent(` ${tadmin.email.toUpperCase()}`)}/suspend`,
      {},
      { token: tadmin.token },
    );
    expect(r.status, r.text).to.equal(409);
    expect(r.body.error.code).to.equal('INVALID_STATE');
    expect((await d.api.get('/v1/me', { token: tadmin.token })).status).to.equal(200);
  });

  it('still suspends another user named by any spelling of their email', async () => {
    const admin = await buildUser(d, { role: 'admin', tier: 'enterprise' });
    const other = await buildUser(d);
    const r = await d.api.post(
      `/v1/admin/users/${encodeURIComponent(` ${other.email.toUpperCase()} `)}/suspend`,
      {},
      { token: admin.token },
    );
    expect(r.status, r.text).to.equal(200);
    expect(r.body.user.status).to.equal('suspended');
  });
});
