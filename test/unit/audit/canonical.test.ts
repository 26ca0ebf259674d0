import { expect } from 'chai';
import { canonicalJson } from '../../../daemon/audit/canonical.js';

describe('audit canonical JSON', () => {
  it('sorts keys, drops whitespace and undefined members, at every depth', () => {
    expect(canonicalJson({ b: 1, a: [3, { d: true, c: null }], e: undefined })).to.equal(
      '{"a":[3,{"c":null,"d":true}],"b":1}',
    );
  });

  it('sorts keys by UTF-16 code units (RFC 8785 3.2.3)', () => {
    // U+00E9 (é) sorts before U+1F600 (an emoji, surrogates D83D...), and upper case before lower case.
    expect(canonicalJson({ '\u{1F600}': 1, é: 2, b: 3, B: 4 })).to.equal('{"B":4,"b":3,"é":2,"\u{1F600}":1}');
  });

  it('writes numbers the ECMAScript way and refuses what JSON cannot hold', () => {
    expect(canonicalJson([1e21, 1.5, -0, 0.1, 1e-7, 100])).to.equal('[1e+21,1.5,0,0.1,1e-7,100]');
    expect(() => canonicalJson(Number.NaN)).to.throw(TypeError);
    expect(() => canonicalJson(10n)).to.throw(TypeError);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => canonicalJson(cyclic)).to.throw(/cycle/);
  });

  it('escapes strings like JSON.stringify (control characters, quotes, lone surrogates)', () => {
    expect(canonicalJson('a\n"b"\u0001\ud800')).to.equal('"a\\n\\"b\\"\\u0001\\ud800"');
  });

  it('is stable under a JSON parse and re-serialization', () => {
    const value = { z: [1, 2.25, 'x'], a: { y: 'é\n', b: false }, n: 123456789012 };
    const text = canonicalJson(value);
    expect(canonicalJson(JSON.parse(text))).to.equal(text);
  });

  it('keeps a key named __proto__ as an ordinary key', () => {
    const parsed = JSON.parse('{"__proto__":{"x":1},"a":1}') as unknown;
    expect(canonicalJson(parsed)).to.equal('{"__proto__":{"x":1},"a":1}');
  });
});
