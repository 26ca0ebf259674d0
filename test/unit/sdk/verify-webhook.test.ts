import { expect } from 'chai';
import { createHmac, randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { verifyWebhook, WebhookVerificationError } from '../../../sdk/src/index.js';

/** A fresh secret, as the gateway shows them: whsec_ + base64 of 32 random bytes. */
const newSecret = (): string => `whsec_${randomBytes(32).toString('base64')}`;

/** Signs the way docs/webhooks.md describes: HMAC-SHA256 of `${id}.${ts}.${body}`, keyed with the base64 after whsec_. */
function handSign(secret: string, id: string, ts: number, body: string): string {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${ts}.${body}`).digest('base64')}`;
}

async function rejection(p: Promise<unknown>): Promise<WebhookVerificationError> {
  try {
    await p;
  } catch (e) {
    expect(e).to.be.instanceOf(WebhookVerificationError);
    return e as WebhookVerificationError;
  }
  throw new Error('expected verifyWebhook to throw');
}

describe('sdk verifyWebhook', () => {
  const message = {
    id: 'whk_01TEST',
    type: 'ping',
    timestamp: '2026-01-01T00:00:00.000Z',
    data: { endpoint_id: 'whe_1', message: 'hello' },
  };
  const body = JSON.stringify(message);

  function headersFor(secret: string, id = message.id, date = new Date(), payload = body): Record<string, string> {
    const signature = new Webhook(secret).sign(id, date, payload);
    return {
      'webhook-id': id,
      'webhook-timestamp': String(Math.floor(date.getTime() / 1000)),
      'webhook-signature': signature,
    };
  }

  it('accepts a message signed by the standardwebhooks package and returns it parsed', async () => {
    const secret = newSecret();
    expect(await verifyWebhook(body, headersFor(secret), secret)).to.deep.equal(message);
  });

  it('accepts the body as bytes, headers in any case, and a fetch Headers object', async () => {
    const secret = newSecret();
    const h = headersFor(secret);
    const upper = Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toUpperCase(), v]));
    expect(await verifyWebhook(new TextEncoder().encode(body), upper, secret)).to.deep.equal(message);
    expect(await verifyWebhook(body, new Headers(h), secret)).to.deep.equal(message);
  });

  it('accepts the reference vector of the Standard Webhooks libraries', async () => {
    const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
    const headers = {
      'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek',
      'webhook-timestamp': '1614265330',
      'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
    };
    expect(await verifyWebhook('{"test": 2432232314}', headers, secret, { now: 1614265330 * 1000 })).to.deep.equal({
      test: 2432232314,
    });
  });

  it('hand-signed per docs/webhooks.md verifies with both the standardwebhooks package and verifyWebhook', async () => {
    const secret = newSecret();
    const ts = Math.floor(Date.now() / 1000);
    const headers = {
      'webhook-id': message.id,
      'webhook-timestamp': String(ts),
      'webhook-signature': handSign(secret, message.id, ts, body),
    };
    expect(new Webhook(secret).verify(body, headers)).to.deep.equal(message);
    expect(await verifyWebhook(body, headers, secret)).to.deep.equal(message);
  });

  it('refuses a tampered body', async () => {
    const secret = newSecret();
    const h = headersFor(secret);
    const e = await rejection(verifyWebhook(body.replace('hello', 'hellO'), h, secret));
    expect(e.message).to.match(/no matching signature/);
  });

  it('refuses a tampered id or timestamp', async () => {
    const secret = newSecret();
    const h = headersFor(secret);
    await rejection(verifyWebhook(body, { ...h, 'webhook-id': 'whk_other' }, secret));
    await rejection(
      verifyWebhook(body, { ...h, 'webhook-timestamp': String(Number(h['webhook-timestamp']) - 1) }, secret),
    );
  });

  it('refuses the wrong secret', async () => {
    await rejection(verifyWebhook(body, headersFor(newSecret()), newSecret()));
  });

  it('refuses a stale or future timestamp, honoring toleranceSeconds and now', async () => {
    const secret = newSecret();
    const signedAt = new Date(Date.now() - 10 * 60_000);
    const h = headersFor(secret, message.id, signedAt);
    expect((await rejection(verifyWebhook(body, h, secret))).message).to.match(/too old/);
    expect(await verifyWebhook(body, h, secret, { toleranceSeconds: 900 })).to.deep.equal(message);
    expect(await verifyWebhook(body, h, secret, { now: signedAt })).to.deep.equal(message);
    const future = headersFor(secret, message.id, new Date(Date.now() + 10 * 60_000));
    expect((await rejection(verifyWebhook(body, future, secret))).message).to.match(/future/);
  });

  it('refuses a missing header or a non-numeric timestamp', async () => {
    const secret = newSecret();
    const h = headersFor(secret);
    for (const name of ['webhook-id', 'webhook-timestamp', 'webhook-signature']) {
      const { [name]: _dropped, ...rest } = h;
      expect((await rejection(verifyWebhook(body, rest, secret))).message).to.match(/missing/);
    }
    await rejection(verifyWebhook(body, { ...h, 'webhook-timestamp': `${h['webhook-timestamp']}.5` }, secret));
    await rejection(verifyWebhook(body, { ...h, 'webhook-timestamp': 'soon' }, secret));
    await rejection(verifyWebhook(body, { ...h, 'webhook-signature': 'v2,abc v1' }, secret));
  });

  it('accepts two signatures (new and old secret) with either secret, or both as a list', async () => {
    const oldSecret = newSecret();
    const newer = newSecret();
    const ts = Math.floor(Date.now() / 1000);
    const both = `${handSign(newer, message.id, ts, body)} ${handSign(oldSecret, message.id, ts, body)}`;
    const headers = { 'webhook-id': message.id, 'webhook-timestamp': String(ts), 'webhook-signature': both };
    expect(await verifyWebhook(body, headers, oldSecret)).to.deep.equal(message);
    expect(await verifyWebhook(body, headers, newer)).to.deep.equal(message);
    expect(await verifyWebhook(body, headers, [newer, oldSecret])).to.deep.equal(message);
    // The reference library agrees with either secret.
    expect(new Webhook(oldSecret).verify(body, headers)).to.deep.equal(message);
    expect(new Webhook(newer).verify(body, headers)).to.deep.equal(message);
    await rejection(verifyWebhook(body, headers, newSecret()));
    // A list of secrets whose second one matches a message signed by the old secret only.
    const oldOnly = { ...headers, 'webhook-signature': handSign(oldSecret, message.id, ts, body) };
    expect(await verifyWebhook(body, oldOnly, [newer, oldSecret])).to.deep.equal(message);
  });

  it('refuses a body that is not JSON even when correctly signed', async () => {
    const secret = newSecret();
    const e = await rejection(
      verifyWebhook('not json', headersFor(secret, message.id, new Date(), 'not json'), secret),
    );
    expect(e.message).to.match(/not JSON/);
  });

  it('throws a TypeError for a malformed secret', async () => {
    const h = headersFor(newSecret());
    let thrown: unknown;
    await verifyWebhook(body, h, 'whsec_***').catch((e: unknown) => (thrown = e));
    expect(thrown).to.be.instanceOf(TypeError);
  });
});
