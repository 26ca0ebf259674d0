import { expect } from 'chai';
import { GatewayError } from '../../../daemon/errors.js';
import { MAX_WEBHOOK_URL_LENGTH, validateWebhookUrl } from '../../../daemon/webhooks/url.js';

const strict = { allowPrivateTargets: false };
const lax = { allowPrivateTargets: true };

function refusal(raw: string, policy = strict): GatewayError {
  try {
    validateWebhookUrl(raw, policy);
  } catch (err) {
    expect(err).to.be.instanceOf(GatewayError);
    return err as GatewayError;
  }
  throw new Error(`${raw} was accepted`);
}

describe('webhooks/url validateWebhookUrl', () => {
  it('accepts an https URL with a public name or address and returns it parsed', () => {
    const url = validateWebhookUrl('https://hooks.example.com/keen?x=1', strict);
    expect(url.href).to.equal('https://hooks.example.com/keen?x=1');
    expect(validateWebhookUrl('https://93.184.216.34:8443/h', strict).port).to.equal('8443');
    expect(validateWebhookUrl('https://[2606:4700:4700::1111]/h', strict).hostname).to.equal('[2606:4700:4700::1111]');
  });

  it('answers INVALID_FIELD on webhook_url with a message', () => {
    const err = refusal('ftp://example.com/');
    expect(err.code).to.equal('INVALID_FIELD');
    expect(err.status).to.equal(400);
    expect(err.details).to.deep.equal([{ field: 'webhook_url', message: 'must be an https URL' }]);
  });

  it('refuses http unless private targets are allowed (the test/dev switch)', () => {
    expect(refusal('http://example.com/').details).to.deep.equal([
      { field: 'webhook_url', message: 'must be an https URL' },
    ]);
    expect(validateWebhookUrl('http://example.com/', lax).protocol).to.equal('http:');
    expect(refusal('ftp://example.com/', lax).code).to.equal('INVALID_FIELD');
  });

  it('refuses relative and malformed URLs, credentials, a missing host and overlong URLs', () => {
    for (const raw of [
      '',
      '/hook',
      'example.com/hook',
      'https://',
      'https://exa mple.com/',
      'javascript:alert(1)',
      'file:///etc/passwd',
    ]) {
      expect(refusal(raw).code, raw).to.equal('INVALID_FIELD');
    }
    expect(refusal('https://user:pass@example.com/').details).to.deep.equal([
      { field: 'webhook_url', message: 'must not contain credentials' },
    ]);
    expect(refusal('https://user@example.com/').code).to.equal('INVALID_FIELD');
    expect(refusal('https://user:pass@example.com/', lax).code).to.equal('INVALID_FIELD');
    const long = `https://example.com/${'a'.repeat(MAX_WEBHOOK_URL_LENGTH)}`;
    expect(refusal(long).details).to.deep.equal([
      { field: 'webhook_url', message: `must be at most ${MAX_WEBHOOK_URL_LENGTH} characters` },
    ]);
    const exact = `https://example.com/${'a'.repeat(MAX_WEBHOOK_URL_LENGTH - 'https://example.com/'.length)}`;
    expect(validateWebhookUrl(exact, strict).href).to.equal(exact);
  });

  const literals = [
    'https://127.0.0.1/',
    'https://10.0.0.1/',
    'https://169.254.169.254/latest/meta-data/',
    'https://[::1]/',
    'https://[::ffff:127.0.0.1]/',
    'https://[::ffff:7f00:1]/',
    'https://0.0.0.0/',
    'https://[fe80::1]/',
    'https://[fd00::1]/',
    'https://192.168.0.10:8443/',
    // The WHATWG parser normalizes these to 127.0.0.1 before the check.
    'https://0x7f.1/',
    'https://2130706433/',
    'https://0177.0.0.1/',
    'https://127.1/',
  ];
  for (const raw of literals) {
    it(`refuses the private literal ${raw} when private targets are not allowed`, () => {
      expect(refusal(raw).details).to.deep.equal([
        { field: 'webhook_url', message: 'must not point to a private, loopback, link-local or reserved address' },
      ]);
      expect(validateWebhookUrl(raw, lax).protocol).to.equal('https:');
    });
  }

  it('lets a name through (it is checked against what it resolves to at connect time)', () => {
    expect(validateWebhookUrl('https://localhost:9/', strict).hostname).to.equal('localhost');
    expect(validateWebhookUrl('https://internal.corp.example/', strict).hostname).to.equal('internal.corp.example');
  });
});
