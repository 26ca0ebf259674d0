import { expect } from 'chai';
import net from 'node:net';
import { TEST_POSTGRES_URL, IN_CI } from '../helpers/env.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { createTestSchema, type TestSchema } from '../helpers/postgres.js';

/**
 * A TCP proxy in front of the real Postgres: cutting it is a Postgres that went
 * away (a crashed peer), without stopping the server other suites use.
 */
class CuttableProxy {
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  port = 0;
  constructor(private readonly target: { host: string; port: number }) {}

  async up(port = 0): Promise<void> {
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  async down(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server = null;
  }
}

(TEST_POSTGRES_URL ? describe : IN_CI ? describe : describe.skip)(
  'Postgres going away while the daemon runs [postgres]',
  () => {
    let d: TestDaemon;
    let proxy: CuttableProxy;
    let schema: TestSchema;

    before(async () => {
      if (!TEST_POSTGRES_URL) throw new Error('KEEN_TEST_POSTGRES_URL is not set');
      const target = new URL(TEST_POSTGRES_URL);
      proxy = new CuttableProxy({ host: target.hostname, port: Number(target.port || 5432) });
      await proxy.up();
      schema = await createTestSchema();
      const viaProxy = new URL(schema.url);
      viaProxy.host = `127.0.0.1:${proxy.port}`;
      d = await startDaemon({ databaseUrl: viaProxy.toString(), config: { database: { connect_timeout_ms: 1000 } } });
    });
    after(async () => {
      await d?.stop();
      await proxy?.down();
      await schema?.drop();
    });

    it('turns ready to 503 naming the database, then recovers when it returns', async () => {
      expect((await d.api.get('/health/ready')).status).to.equal(200);
      const port = proxy.port;
      await proxy.down();
      const down = await d.api.get('/health/ready');
      expect(down.status).to.equal(503);
      expect(down.body.error.code).to.equal('UNAVAILABLE');
      expect(down.body.error.details.checks.database).to.equal('fail');
      expect(down.headers.get('retry-after')).to.equal('1');
      expect(down.text).not.to.match(/ECONNREFUSED|select 1|postgres:\/\//);
      expect((await d.api.get('/health/live')).status).to.equal(200);
      await proxy.up(port);
      let ok = false;
      for (let i = 0; i < 50 && !ok; i++) {
        ok = (await d.api.get('/health/ready')).status === 200;
        if (!ok) await new Promise((r) => setTimeout(r, 100));
      }
      expect(ok, 'ready again after Postgres returned').to.equal(true);
    });
  },
);
