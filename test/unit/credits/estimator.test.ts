import { expect } from 'chai';
import { CostEstimator } from '../../../daemon/credits/estimator.js';
import { GatewayError } from '../../../daemon/errors.js';

const pricing = { per_1k_input_tokens: 0.003, per_1k_output_tokens: 0.015, per_web_search: 0.01 };

describe('credits/estimator', () => {
  const est = new CostEstimator(pricing);

  it('prices usage in integer micros, rounding up once', () => {
    expect(est.priceUsage({ input_tokens: 0, output_tokens: 0, web_searches: 0 })).to.equal(0);
    // 1000 input tokens at 0.003 per 1k = 3000 micros.
    expect(est.priceUsage({ input_tokens: 1000, output_tokens: 0, web_searches: 0 })).to.equal(3000);
    // 1 input token = 3 micros exactly; 1 output token = 15 micros.
    expect(est.priceUsage({ input_tokens: 1, output_tokens: 1, web_searches: 0 })).to.equal(18);
    expect(est.priceUsage({ input_tokens: 0, output_tokens: 0, web_searches: 3 })).to.equal(30_000);
    expect(est.priceUsage({ input_tokens: 12_345, output_tokens: 678, web_searches: 2 })).to.equal(
      37_035 + 10_170 + 20_000,
    );
  });

  it('rounds a fraction of a micro up', () => {
    const fine = new CostEstimator({ per_1k_input_tokens: 0.000001, per_1k_output_tokens: 0, per_web_search: 0 });
    expect(fine.priceUsage({ input_tokens: 1, output_tokens: 0, web_searches: 0 })).to.equal(1);
    expect(fine.priceUsage({ input_tokens: 1000, output_tokens: 0, web_searches: 0 })).to.equal(1);
    expect(fine.priceUsage({ input_tokens: 1001, output_tokens: 0, web_searches: 0 })).to.equal(2);
  });

  it('refuses bad usage counts', () => {
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => est.priceUsage({ input_tokens: bad, output_tokens: 0, web_searches: 0 })).to.throw(
        GatewayError,
        /input_tokens/,
      );
    }
  });

  it('estimates with the documented formula (the worked example of docs/credits.md)', () => {
    const vision = 'x'.repeat(400);
    expect(est.estimateUsage({ vision })).to.deep.equal({
      input_tokens: 205_000,
      output_tokens: 50_000,
      web_searches: 50,
    });
    // 205 * 3000 + 50 * 15000 + 50 * 10000 = 615000 + 750000 + 500000
    expect(est.estimate({ vision })).to.equal(1_865_000);
  });

  it('prices the settlement of the worked example', () => {
    expect(est.priceUsage({ input_tokens: 120_000, output_tokens: 20_000, web_searches: 12 })).to.equal(780_000);
  });

  it('follows maxIterations, enableWebSearch and the vision length', () => {
    expect(
      est.estimateUsage({ vision: 'x'.repeat(401), options: { maxIterations: 2, enableWebSearch: false } }),
    ).to.deep.equal({
      input_tokens: 2 * (101 + 4000),
      output_tokens: 2000,
      web_searches: 0,
    });
    expect(est.estimate({ vision: 'x'.repeat(401), options: { maxIterations: 2, enableWebSearch: false } })).to.equal(
      Math.ceil((8202 * 3000 + 2000 * 15000) / 1000),
    );
    // Code points, not UTF-16 units: 4 emoji are 4 chars = 1 token.
    expect(est.estimateUsage({ vision: '😀😀😀😀', options: { maxIterations: 1 } }).input_tokens).to.equal(4001);
    expect(() => est.estimate({ vision: 'x', options: { maxIterations: 0 } })).to.throw(GatewayError, /maxIterations/);
  });

  it('reserves the costBudget when given, the estimate otherwise', () => {
    expect(est.reservationFor({ vision: 'x'.repeat(400), options: { costBudget: 2.5 } })).to.equal(2_500_000);
    expect(est.reservationFor({ vision: 'x'.repeat(400) })).to.equal(1_865_000);
    expect(() => est.reservationFor({ vision: 'x', options: { costBudget: 0.0000001 } })).to.throw(
      GatewayError,
      /costBudget/,
    );
    const free = new CostEstimator({ per_1k_input_tokens: 0, per_1k_output_tokens: 0, per_web_search: 0 });
    expect(free.reservationFor({ vision: 'x' })).to.equal(1);
  });

  it('refuses prices finer than a micro at construction', () => {
    expect(() => new CostEstimator({ ...pricing, per_web_search: 0.0000001 })).to.throw(GatewayError, /per_web_search/);
  });
});
