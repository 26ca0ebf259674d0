import { expect } from 'chai';
import { GatewayError } from '../../../daemon/errors.js';
import {
  MAX_MICROS,
  addMicros,
  credits,
  formatCredits,
  parseCredits,
  subMicros,
  toMicros,
  type Micros,
} from '../../../daemon/credits/money.js';

function refused(value: unknown, options: { allowZero?: boolean; allowNegative?: boolean } = {}): GatewayError {
  try {
    parseCredits(value, 'amount', options);
  } catch (err) {
    expect(err).to.be.instanceOf(GatewayError);
    const e = err as GatewayError;
    expect(e.code).to.equal('INVALID_FIELD');
    expect(e.status).to.equal(400);
    expect(e.details).to.be.an('array').with.length(1);
    expect((e.details as Array<{ field: string }>)[0]!.field).to.equal('amount');
    return e;
  }
  throw new Error(`${String(value)} was accepted`);
}

describe('credits/money', () => {
  describe('parseCredits', () => {
    const accepted: Array<[unknown, number]> = [
      [1, 1_000_000],
      [12.5, 12_500_000],
      ['12.5', 12_500_000],
      [0.000001, 1],
      ['0.000001', 1],
      [0.1, 100_000],
      [0.3, 300_000],
      [1.123456, 1_123_456],
      ['1.123456', 1_123_456],
      ['1.1000000', 1_100_000], // trailing zeros are exact
      [' 7 ', 7_000_000],
      ['007.50', 7_500_000],
      [1e9, 1_000_000_000_000_000],
      ['1000000000', 1_000_000_000_000_000],
      [999_999_999.999999, 999_999_999_999_999],
      ['1e3', 1_000_000_000],
      ['1.5E2', 150_000_000],
      ['25e-1', 2_500_000],
      ['1e-6', 1],
    ];
    for (const [value, micros] of accepted) {
      it(`accepts ${JSON.stringify(value)} as ${micros} micros`, () => {
        expect(parseCredits(value, 'amount')).to.equal(micros);
      });
    }

    const refusedValues: Array<[unknown, RegExp]> = [
      [-1, /positive/],
      ['-0.5', /positive/],
      [0, /positive/],
      ['0', /positive/],
      ['0.000', /positive/],
      [Number.NaN, /finite/],
      [Number.POSITIVE_INFINITY, /finite/],
      ['abc', /decimal/],
      ['', /decimal/],
      ['1.2.3', /decimal/],
      ['0x10', /decimal/],
      ['1,5', /decimal/],
      [1e308, /at most 1000000000/],
      ['1e308', /at most 1000000000/],
      [1e21, /at most 1000000000/],
      [1_000_000_000.000001, /at most 1000000000/],
      ['1000000000.000001', /at most 1000000000/],
      ['99999999999', /at most 1000000000/],
      [0.0000001, /6 decimal/],
      ['0.0000001', /6 decimal/],
      ['1.1234567', /6 decimal/],
      [0.1 + 0.2, /6 decimal/],
      ['1e-7', /6 decimal/],
      ['1e-400', /6 decimal/],
      [null, /number/],
      [undefined, /number/],
      [true, /number/],
      [{}, /number/],
      [[1], /number/],
      [10n, /number/],
    ];
    for (const [value, message] of refusedValues) {
      it(`refuses ${typeof value === 'bigint' ? `${value}n` : (JSON.stringify(value) ?? String(value))}`, () => {
        expect(refused(value).message).to.match(message);
      });
    }

    it('accepts zero only when allowed', () => {
      expect(parseCredits(0, 'price', { allowZero: true })).to.equal(0);
      expect(parseCredits('0.0', 'price', { allowZero: true })).to.equal(0);
      refused(-0.1, { allowZero: true });
    });

    it('accepts negatives only with allowNegative (adjustments), by the same rules, never 0', () => {
      expect(parseCredits(-1.5, 'amount', { allowNegative: true })).to.equal(-1_500_000);
      expect(parseCredits('-0.000001', 'amount', { allowNegative: true })).to.equal(-1);
      expect(parseCredits('-1.5e2', 'amount', { allowNegative: true })).to.equal(-150_000_000);
      expect(parseCredits(2, 'amount', { allowNegative: true })).to.equal(2_000_000);
      expect(parseCredits(-1e9, 'amount', { allowNegative: true })).to.equal(-MAX_MICROS);
      expect(refused(-1.5).message).to.match(/positive/);
      expect(refused(0, { allowNegative: true }).message).to.match(/not be zero/);
      expect(refused('-0', { allowNegative: true }).message).to.match(/not be zero/);
      expect(refused(-1.1234567, { allowNegative: true }).message).to.match(/6 decimal/);
      expect(refused(-1e10, { allowNegative: true }).message).to.match(/at most/);
      for (const v of ['--1', '-+1', '+-1', '- 1', '-']) refused(v, { allowNegative: true });
    });

    it('names the field in message and details', () => {
      const e = refused('1.1234567');
      expect(e.details).to.deep.equal([{ field: 'amount', message: 'must have at most 6 decimal places' }]);
    });
  });

  describe('formatCredits', () => {
    const cases: Array<[number, number, string]> = [
      [0, 0, '0'],
      [1, 0.000001, '0.000001'],
      [12_500_000, 12.5, '12.5'],
      [100_000, 0.1, '0.1'],
      [300_000, 0.3, '0.3'],
      [-2_250_000, -2.25, '-2.25'],
      [1_000_000_000_000_000, 1e9, '1000000000'],
      [123_456_789_123_456, 123456789.123456, '123456789.123456'],
    ];
    for (const [micros, credit, json] of cases) {
      it(`formats ${micros} micros as ${json}`, () => {
        const out = formatCredits(toMicros(micros));
        expect(out).to.equal(credit);
        expect(JSON.stringify(out)).to.equal(json);
      });
    }

    it('round-trips with parseCredits', () => {
      for (const text of ['0.000001', '0.1', '1.5', '33.333333', '999999.999999', '42']) {
        const m = parseCredits(text, 'x');
        expect(String(formatCredits(m))).to.equal(text);
        expect(parseCredits(formatCredits(m), 'x')).to.equal(m);
      }
    });

    it('refuses non-integers', () => {
      expect(() => formatCredits(0.5 as Micros)).to.throw(RangeError);
    });
  });

  describe('arithmetic', () => {
    it('adds and subtracts exactly and refuses to leave the safe range', () => {
      expect(addMicros(credits(1), toMicros(1))).to.equal(1_000_001);
      expect(subMicros(credits(1), credits(3))).to.equal(-2_000_000);
      expect(() => addMicros(toMicros(Number.MAX_SAFE_INTEGER), toMicros(1))).to.throw(RangeError);
      expect(() => toMicros(1.5)).to.throw(RangeError);
      expect(() => credits(0.5)).to.throw(RangeError);
      expect(MAX_MICROS).to.equal(1e15);
    });
  });
});
