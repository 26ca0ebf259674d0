import { expect } from 'chai';
import { isKept } from '../../../daemon/storage/database.js';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { buildApiKey, buildUser } from '../../helpers/factories.js';

/**
 * The principal caches are keyed by `Kept` objects only (daemon/storage/database.ts): a principal
 * built from a kept row is the same `Kept` object request after request, and a new one after a
 * write to the row's table; without kept rows nothing is cached.
 */
describeStorage('caches keyed by kept rows', (backend) => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon({ backend, logLevel: 'warn' });
    for (let i = 0; i < 200 && !d.container.database.cacheState!.serving; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
  });
  after(async () => d?.stop());

  /** Postgres: lets the notifications of the writes so far arrive (each drops what was kept). */
  async function settle(): Promise<void> {
    for (let heard = -1; heard !== d.container.database.cacheState!.notifications; ) {
      heard = d.container.database.cacheState!.notifications;
      await new Promise((r) => setTimeout(r, backend === 'postgres' ? 100 : 0));
    }
  }

  it('reuses the principal of a kept API key row until the key is written', async () => {
    const u = await buildUser(d);
    const key = await buildApiKey(d, u);
    const header = `ApiKey ${key.key}`;
    // The first use writes the key's last_used_at.
    await d.container.auth.authenticate(header);
    await settle();
    const first = await d.container.auth.authenticate(header);
    expect(isKept(first)).to.equal(true);
    expect(await d.container.auth.authenticate(header)).to.equal(first);
    await d.container.database.db.updateTable('api_keys').set({ name: 'renamed' }).where('id', '=', key.id).execute();
    const after = await d.container.auth.authenticate(header);
    expect(after).not.to.equal(first);
    expect(after).to.deep.equal(first);
  });

  it('reuses the principal of an access token while its user row is kept', async () => {
    const u = await buildUser(d);
    const header = `Bearer ${u.token}`;
    await settle();
    await d.container.auth.authenticate(header);
    const first = await d.container.auth.authenticate(header);
    expect(isKept(first)).to.equal(true);
    expect(await d.container.auth.authenticate(header)).to.equal(first);
  });

  it('never marks a plain frozen object kept', () => {
    expect(isKept(Object.freeze({ userId: 'usr_x' }))).to.equal(false);
  });
});
