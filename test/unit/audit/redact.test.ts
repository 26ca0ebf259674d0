import { expect } from 'chai';
import { REDACTED, TRUNCATED, redactDetails, redactField, looksLikeSecret } from '../../../daemon/audit/redact.js';
import { CANARY } from './canaries.js';

const ALL = Object.values(CANARY);

function leaks(value: unknown): string[] {
  const text = JSON.stringify(value);
  return ALL.filter((c) => text.includes(c));
}

describe('audit redaction', () => {
  it('redacts secret-named keys at any depth and in any case', () => {
    const keys = [
      'password',
      'newPassword',
      'new_password',
      'currentPassword',
      'passwd',
      'PASSWORD',
      'secret',
      'client_secret',
      'totp_secret',
      'token',
      'access_token',
      'refresh_token',
      'refreshToken',
      'mfa_token',
      'apiKey',
      'api_key',
      'x-api-key',
      'API-KEY',
      'authorization',
      'Authorization',
      'cookie',
      'Set-Cookie',
      'recovery_code',
      'recoveryCodes',
      'otp',
      'totp',
      'ticket',
      'privateKey',
      'private_key',
      'key',
    ];
    const details: Record<string, unknown> = {};
    keys.forEach((k, i) => (details[k] = ALL[i % ALL.length]));
    details.nested = { deeper: [{ password: CANARY.password, ok: 'kept' }], refresh_token: { any: 'shape' } };
    const out = redactDetails(details);
    expect(leaks(out)).to.deep.equal([]);
    for (const k of keys) expect(out[k], k).to.equal(REDACTED);
    expect(out.nested).to.deep.equal({ deeper: [{ password: REDACTED, ok: 'kept' }], refresh_token: REDACTED });
  });

  it('redacts credential-shaped values under harmless keys', () => {
    const out = redactDetails({
      note: CANARY.apiKey,
      header: `Bearer ${CANARY.jwt}`,
      header2: `ApiKey ${CANARY.apiKey}`,
      raw_jwt: CANARY.jwt,
      embedded: `the token is ${CANARY.jwt} ok`,
      rt: CANARY.refreshToken,
      provisioning: `otpauth://totp/keen:bob?secret=${CANARY.totpSecret}&issuer=keen`,
      base32: CANARY.totpSecret,
      recovery: 'k3m9x-2q7dp',
      list: ['fine', CANARY.apiKey.replace('live', 'test')],
      pem: '-----BEGIN PRIVATE KEY-----\nMC4CAQ...\n-----END PRIVATE KEY-----',
    });
    expect(leaks(out)).to.deep.equal([]);
    expect(Object.values(out).filter((v) => v !== REDACTED)).to.deep.equal([['fine', REDACTED]]);
  });

  it('keeps ordinary values, including usage token counts', () => {
    const details = {
      email: 'bob@example.com',
      reason: 'wrong_password',
      input_tokens: 1200,
      output_tokens: 30,
      amount_micros: 5_000_000,
      ok: true,
      none: null,
    };
    expect(redactDetails(details)).to.deep.equal(details);
    // A count is kept only when it is a number under a counter name.
    expect(redactDetails({ input_tokens: 'abc', tokens: 5 })).to.deep.equal({
      input_tokens: REDACTED,
      tokens: REDACTED,
    });
  });

  it('bounds strings, depth, width and the total size', () => {
    const long = 'x'.repeat(5000);
    const out = redactDetails({ long });
    expect((out.long as string).length).to.be.lessThan(1100);
    expect(out.long as string).to.match(/…\[truncated 4000 chars\]$/);
    let deep: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 20; i++) deep = { d: deep };
    expect(JSON.stringify(redactDetails(deep))).to.include(TRUNCATED);
    const wide = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`k${i}`, i]));
    expect(Object.keys(redactDetails(wide))).to.have.length(101);
    expect(redactDetails({ arr: Array.from({ length: 300 }, (_, i) => i) }).arr).to.have.length(101);
    const huge = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, 'y'.repeat(900)]));
    expect(redactDetails(huge)).to.deep.include({ truncated: true });
  });

  it('makes non-JSON values safe and never throws', () => {
    const cyclic: Record<string, unknown> = { name: 'c' };
    cyclic.self = cyclic;
    const throwing = Object.defineProperty({}, 'boom', {
      enumerable: true,
      get() {
        throw new Error('no');
      },
    });
    const out = redactDetails({
      fn: () => 1,
      sym: Symbol('s'),
      big: 2n ** 70n,
      nan: Number.NaN,
      inf: Number.POSITIVE_INFINITY,
      date: new Date(0),
      err: new Error(`failed with ${CANARY.jwt}`),
      buf: Buffer.from('secret bytes'),
      map: new Map([['a', 1]]),
      set: new Set([1, 2]),
      cyclic,
      throwing,
      undef: undefined,
      arr: [undefined, () => 1],
    });
    expect(out).to.deep.equal({
      big: '1180591620717411303424',
      nan: null,
      inf: null,
      date: '1970-01-01T00:00:00.000Z',
      err: { name: 'Error', message: REDACTED },
      buf: '[binary 12 bytes]',
      map: { a: 1 },
      set: [1, 2],
      cyclic: { name: 'c', self: '[Circular]' },
      throwing: { boom: '[Unreadable]' },
      arr: [null, null],
    });
    expect(redactDetails(undefined)).to.deep.equal({});
    expect(redactDetails('just a string')).to.deep.equal({ value: 'just a string' });
  });

  it('makes strings storable: NUL and lone surrogates become U+FFFD; __proto__ is an ordinary key', () => {
    const out = redactDetails(JSON.parse('{"__proto__":{"polluted":true},"s":"a\\u0000b\\ud800c"}'));
    expect(Object.getPrototypeOf(out)).to.equal(Object.prototype);
    expect(Object.keys(out)).to.deep.equal(['__proto__', 's']);
    expect(out.s).to.equal('a\uFFFDb\uFFFDc');
    expect(({} as Record<string, unknown>).polluted).to.equal(undefined);
  });

  it('redacts and bounds top-level fields', () => {
    expect(redactField(`Bearer ${CANARY.jwt}`, 500)).to.equal(REDACTED);
    expect(redactField('curl/8.0', 500)).to.equal('curl/8.0');
    expect(redactField(null, 10)).to.equal(null);
    expect(redactField('abcdefghijklmnop', 4)).to.match(/^abcd…/);
    expect(looksLikeSecret('INTERNATIONAL')).to.equal(false);
    expect(looksLikeSecret('hello-world')).to.equal(false);
  });
});
