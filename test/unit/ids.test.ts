import { expect } from 'chai';
import { isId, newId } from '../../daemon/ids.js';
import { ClientIpResolver } from '../../daemon/http/client-ip.js';

describe('ids', () => {
  it('carry their type prefix and 26 base32 characters', () => {
    const id = newId('usr');
    expect(id).to.match(/^usr_[0-9a-z]{26}$/);
    expect(isId(id, 'usr')).to.equal(true);
    expect(isId(id, 'key')).to.equal(false);
    expect(isId('usr_../../etc', 'usr')).to.equal(false);
    expect(isId(42, 'usr')).to.equal(false);
  });

  it('sort by creation time and never repeat', () => {
    const a = newId('ses', 1_000_000);
    const b = newId('ses', 1_000_001);
    expect(a < b).to.equal(true);
    const many = new Set(Array.from({ length: 10_000 }, () => newId('req')));
    expect(many.size).to.equal(10_000);
  });
});

describe('client address', () => {
  it('is the socket peer when no proxy is trusted, whatever X-Forwarded-For says', () => {
    const r = new ClientIpResolver([]);
    expect(r.resolve('10.1.1.1', '1.2.3.4')).to.equal('10.1.1.1');
    expect(r.resolve('::ffff:127.0.0.1', undefined)).to.equal('127.0.0.1');
    expect(r.resolve(undefined, undefined)).to.equal('unknown');
  });

  it('believes X-Forwarded-For only from a trusted proxy, taking the right-most untrusted hop', () => {
    const r = new ClientIpResolver(['10.0.0.0/8', '192.168.1.1']);
    expect(r.resolve('10.0.0.5', '6.6.6.6, 203.0.113.9')).to.equal('203.0.113.9');
    expect(r.resolve('192.168.1.1', '203.0.113.9, 10.0.0.7')).to.equal('203.0.113.9');
    expect(r.resolve('8.8.8.8', '203.0.113.9')).to.equal('8.8.8.8');
    expect(r.resolve('10.0.0.5', 'garbage')).to.equal('10.0.0.5');
    expect(r.resolve('10.0.0.5', ['1.1.1.1', '2.2.2.2'])).to.equal('2.2.2.2');
    expect(r.resolve('10.0.0.5', '10.0.0.6')).to.equal('10.0.0.6');
  });

  it('refuses a malformed trusted proxy entry', () => {
    expect(() => new ClientIpResolver(['not-an-ip'])).to.throw(/trusted_proxies/);
  });

  it('handles IPv6 proxies', () => {
    const r = new ClientIpResolver(['::1']);
    expect(r.resolve('::1', '2001:db8::1')).to.equal('2001:db8::1');
  });
});
