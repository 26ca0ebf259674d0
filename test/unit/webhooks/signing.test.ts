import { expect } from 'chai';
import { deriveSigningSecret, signWebhook, verifySignature } from '../../../daemon/webhooks/signing.js';

describe('webhooks/signing', () => {
  const serverSecret = Buffer.from('a-server-secret-of-at-least-32-bytes-long!!');

  it('derives a stable whsec_ secret per user, different across users and server secrets', () => {
    const a = deriveSigningSecret(serverSecret, 'usr_a');
    expect(a).to.match(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(deriveSigningSecret(serverSecret, 'usr_a')).to.equal(a);
    expect(deriveSigningSecret(serverSecret, 'usr_b')).to.not.equal(a);
    expect(deriveSigningSecret(Buffer.from('another-server-secret-of-32-bytes-or-more'), 'usr_a')).to.not.equal(a);
  });

  it('matches the Standard Webhooks reference vector', () => {
    // From the standard-webhooks reference libraries' tests.
    const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
    const sig = signWebhook(secret, 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}');
    expect(sig).to.equal('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
  });

  describe('verifySignature', () => {
    const secret = deriveSigningSecret(serverSecret, 'usr_a');
    const now = Date.UTC(2026, 0, 1);
    const ts = Math.floor(now / 1000);
    const body = '{"id":"whk_1","type":"session.completed"}';
    const headers = (over: Record<string, string> = {}) => ({
      'webhook-id': 'whk_1',
      'webhook-timestamp': String(ts),
      'webhook-signature': signWebhook(secret, 'whk_1', ts, body),
      ...over,
    });

    it('accepts the signed body, with headers in any case or as a fetch Headers', () => {
      expect(verifySignature(secret, headers(), body, 300, now)).to.equal(true);
      expect(verifySignature(secret, headers(), Buffer.from(body), 300, now)).to.equal(true);
      const upper = Object.fromEntries(Object.entries(headers()).map(([k, v]) => [k.toUpperCase(), v]));
      expect(verifySignature(secret, upper, body, 300, now)).to.equal(true);
      expect(verifySignature(secret, new Headers(headers()), body, 300, now)).to.equal(true);
    });

    it('accepts when one of several space-separated signatures matches (rotation)', () => {
      const h = headers();
      h['webhook-signature'] = `v1,${Buffer.alloc(32).toString('base64')} ${h['webhook-signature']}`;
      expect(verifySignature(secret, h, body, 300, now)).to.equal(true);
    });

    it('refuses a tampered body, id or timestamp, another secret, and missing headers', () => {
      expect(verifySignature(secret, headers(), body.replace('completed', 'failed'), 300, now)).to.equal(false);
      expect(verifySignature(secret, headers({ 'webhook-id': 'whk_2' }), body, 300, now)).to.equal(false);
      expect(verifySignature(secret, headers({ 'webhook-timestamp': String(ts + 1) }), body, 300, now)).to.equal(false);
      expect(verifySignature(deriveSigningSecret(serverSecret, 'usr_b'), headers(), body, 300, now)).to.equal(false);
      expect(verifySignature(secret, headers({ 'webhook-signature': 'v2,abc' }), body, 300, now)).to.equal(false);
      expect(verifySignature(secret, headers({ 'webhook-timestamp': 'soon' }), body, 300, now)).to.equal(false);
      const { 'webhook-signature': _drop, ...noSig } = headers();
      expect(verifySignature(secret, noSig, body, 300, now)).to.equal(false);
    });

    it('refuses a timestamp outside the tolerance (replay)', () => {
      expect(verifySignature(secret, headers(), body, 300, now + 300_000)).to.equal(true);
      expect(verifySignature(secret, headers(), body, 300, now + 301_000)).to.equal(false);
      expect(verifySignature(secret, headers(), body, 300, now - 301_000)).to.equal(false);
    });
  });
});
