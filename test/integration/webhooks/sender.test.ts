import { expect } from 'chai';
import type { LookupAddress } from 'node:dns';
import { WebhookSender, type Resolver, type WebhookRequest } from '../../../daemon/webhooks/sender.js';
import { deriveSigningSecret, verifySignature } from '../../../daemon/webhooks/signing.js';
import { Receiver, statuses } from './support.js';

const secret = deriveSigningSecret(Buffer.from('a-server-secret-of-at-least-32-bytes-long!!'), 'usr_sender');

function message(url: string, over: Partial<WebhookRequest> = {}): WebhookRequest {
  return {
    url,
    id: 'whk_01test',
    timestampSeconds: Math.floor(Date.now() / 1000),
    body: JSON.stringify({
      id: 'whk_01test',
      type: 'session.completed',
      timestamp: new Date().toISOString(),
      data: { n: 1 },
    }),
    secret,
    ...over,
  };
}

/** A resolver that answers from a table and remembers what it was asked. */
function fakeResolver(table: Record<string, LookupAddress[]>): Resolver & { asked: string[] } {
  const asked: string[] = [];
  const resolve = async (name: string): Promise<LookupAddress[]> => {
    asked.push(name);
    const found = table[name];
    if (!found) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    return found;
  };
  return Object.assign(resolve, { asked });
}

describe('webhooks/sender (real loopback HTTP)', () => {
  let receiver: Receiver;
  let other: Receiver;

  beforeEach(async () => {
    receiver = await Receiver.start();
    other = await Receiver.start();
  });
  afterEach(async () => {
    await receiver.close();
    await other.close();
  });

  describe('with private targets allowed (test mode)', () => {
    const sender = new WebhookSender({ allowPrivateTargets: true });

    it('POSTs the body with Standard Webhooks headers the receiver can verify', async () => {
      const msg = message(receiver.url('/hook?src=keen'));
      const result = await sender.send(msg);
      expect(result).to.include({ outcome: 'delivered', statusCode: 200, error: null });
      expect(receiver.received).to.have.length(1);
      const got = receiver.received[0]!;
      expect(got.method).to.equal('POST');
      expect(got.path).to.equal('/hook?src=keen');
      expect(got.body).to.equal(msg.body);
      expect(got.headers).to.include({
        'content-type': 'application/json',
        'user-agent': 'keen-gateway-webhooks/1',
        'webhook-id': 'whk_01test',
        'webhook-timestamp': String(msg.timestampSeconds),
      });
      expect(got.headers['webhook-signature']).to.match(/^v1,[A-Za-z0-9+/]{43}=$/);
      expect(verifySignature(secret, got.headers, got.body)).to.equal(true);
      expect(verifySignature(secret, got.headers, got.body.replace('"n":1', '"n":2'))).to.equal(false);
    });

    it('reports a non-2xx answer as a failed attempt with its status', async () => {
      receiver.respond = statuses(500);
      expect(await sender.send(message(receiver.url()))).to.include({
        outcome: 'failed',
        statusCode: 500,
        error: 'HTTP 500',
      });
    });

    it('does not follow a redirect, even to an allowed address', async () => {
      receiver.respond = (_req, res) => {
        res.writeHead(302, { location: other.url('/') });
        res.end();
      };
      const result = await sender.send(message(receiver.url()));
      expect(result).to.include({ outcome: 'failed', statusCode: 302 });
      expect(result.error).to.match(/^redirect/);
      expect(other.connections).to.equal(0);
      expect(other.received).to.have.length(0);
    });

    it('gives up on a receiver that never answers, within the total timeout', async () => {
      receiver.respond = () => undefined;
      const bounded = new WebhookSender({ allowPrivateTargets: true, totalTimeoutMs: 300 });
      const started = Date.now();
      const result = await bounded.send(message(receiver.url()));
      expect(Date.now() - started).to.be.below(2_000);
      expect(result.outcome).to.equal('failed');
      expect(result.error).to.match(/^timeout: no complete response within 300 ms/);
      expect(receiver.received).to.have.length(1);
    });

    it('gives up on a response body that never ends, within the total timeout', async () => {
      receiver.respond = (_req, res) => {
        res.writeHead(200);
        res.write('x');
      };
      const bounded = new WebhookSender({ allowPrivateTargets: true, totalTimeoutMs: 300 });
      const result = await bounded.send(message(receiver.url()));
      expect(result).to.include({ outcome: 'failed', statusCode: 200 });
      expect(result.error).to.match(/^timeout/);
    });

    it('reads at most the response bound and stops', async () => {
      let written = 0;
      receiver.respond = (_req, res) => {
        res.writeHead(200);
        const chunk = Buffer.alloc(16 * 1024, 'y');
        const pump = (): void => {
          // An endless body: only the sender closing the connection ends it.
          while (!res.destroyed) {
            written += chunk.length;
            if (!res.write(chunk)) break;
          }
          if (!res.destroyed) res.once('drain', pump);
        };
        pump();
      };
      const bounded = new WebhookSender({
        allowPrivateTargets: true,
        maxResponseBytes: 64 * 1024,
        totalTimeoutMs: 5_000,
      });
      const result = await bounded.send(message(receiver.url()));
      expect(result).to.include({ outcome: 'delivered', statusCode: 200 });
      expect(result.durationMs).to.be.below(2_000);
      expect(written).to.be.at.least(64 * 1024);
    });

    it('bounds the connect phase, DNS included', async () => {
      const hang: Resolver = () => new Promise(() => undefined);
      const bounded = new WebhookSender({ allowPrivateTargets: true, connectTimeoutMs: 200, resolver: hang });
      const started = Date.now();
      const result = await bounded.send(message('http://hangs.example.test/'));
      expect(Date.now() - started).to.be.below(2_000);
      expect(result).to.include({ outcome: 'failed', error: 'timeout: no connection within 200 ms' });
    });

    it('reports connection and DNS failures briefly', async () => {
      const port = receiver.port;
      await receiver.close();
      receiver = await Receiver.start();
      expect(await sender.send(message(`http://127.0.0.1:${port}/`))).to.include({
        outcome: 'failed',
        error: 'network: ECONNREFUSED',
      });
      const dns = new WebhookSender({ allowPrivateTargets: true, resolver: fakeResolver({}) });
      expect(await dns.send(message('http://nowhere.example.test/'))).to.include({
        outcome: 'failed',
        error: 'dns: ENOTFOUND',
      });
    });

    it('connects to the address its own lookup returned', async () => {
      const resolver = fakeResolver({ 'hooks.example.test': [{ address: '127.0.0.1', family: 4 }] });
      const viaName = new WebhookSender({ allowPrivateTargets: true, resolver });
      const result = await viaName.send(message(receiver.url('/h', 'http', 'hooks.example.test')));
      expect(result.outcome).to.equal('delivered');
      expect(resolver.asked).to.deep.equal(['hooks.example.test']);
      expect(receiver.received[0]!.headers.host).to.equal(`hooks.example.test:${receiver.port}`);
    });
  });

  describe('with private targets refused (production)', () => {
    const literals = ['127.0.0.1', '10.0.0.1', '169.254.169.254', '[::1]', '[::ffff:127.0.0.1]', '0.0.0.0'];
    for (const host of literals) {
      it(`refuses https://${host} before any connection`, async () => {
        const sender = new WebhookSender({ allowPrivateTargets: false });
        const result = await sender.send(message(`https://${host}:${receiver.port}/hook`));
        expect(result.outcome).to.equal('refused');
        expect(result.error).to.match(/^refused: webhook_url must not point to a private/);
        expect(receiver.connections).to.equal(0);
      });
    }

    it('refuses plain http', async () => {
      const sender = new WebhookSender({ allowPrivateTargets: false });
      expect(await sender.send(message('http://hooks.example.com/'))).to.include({
        outcome: 'refused',
        error: 'refused: webhook_url must be an https URL',
      });
    });

    it('refuses `localhost` at connect time (the name passes validation, the lookup refuses it)', async () => {
      const sender = new WebhookSender({ allowPrivateTargets: false });
      const result = await sender.send(message(`https://localhost:${receiver.port}/hook`));
      expect(result.outcome).to.equal('refused');
      expect(result.error).to.match(/^refused: localhost resolves to (127\.0\.0\.1|::1), a private/);
      expect(receiver.connections).to.equal(0);
    });

    it('refuses a name when ANY of its addresses is private, as resolved at connect time (DNS rebinding)', async () => {
      // A rebinding name: public when a validator might have looked, private by the time of the connection.
      let calls = 0;
      const answers: LookupAddress[][] = [
        [{ address: '93.184.216.34', family: 4 }],
        [
          { address: '93.184.216.34', family: 4 },
          { address: '127.0.0.1', family: 4 },
        ],
      ];
      const rebinding: Resolver = async () => answers[Math.min(calls++, answers.length - 1)]!;
      await rebinding('rebind.example.test'); // what a validate-then-connect design would have checked
      const sender = new WebhookSender({ allowPrivateTargets: false, resolver: rebinding });
      const result = await sender.send(message(`https://rebind.example.test:${receiver.port}/hook`));
      expect(calls).to.equal(2);
      expect(result).to.include({
        outcome: 'refused',
        error:
          'refused: rebind.example.test resolves to 127.0.0.1, a private, loopback, link-local or reserved address',
      });
      expect(receiver.connections).to.equal(0);
    });

    for (const address of ['10.0.0.1', '169.254.169.254', '::1', '::ffff:127.0.0.1', 'fd00::1', '0.0.0.0']) {
      it(`refuses a name resolving to ${address}`, async () => {
        const family = address.includes(':') ? 6 : 4;
        const sender = new WebhookSender({
          allowPrivateTargets: false,
          resolver: fakeResolver({ 'inside.example.test': [{ address, family }] }),
        });
        const result = await sender.send(message(`https://inside.example.test:${receiver.port}/`));
        expect(result.outcome).to.equal('refused');
        expect(receiver.connections).to.equal(0);
      });
    }
  });
});
