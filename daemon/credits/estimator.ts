import type { GatewayConfig } from '../../schemas/types.gen.js';
import { invalidField } from '../errors.js';
import { maxMicros, parseCredits, toMicros, type Micros } from './money.js';

/** The parts of an execute request that decide its cost (the rest is validated elsewhere). */
export interface CostRequest {
  vision: string;
  options?: {
    maxIterations?: number;
    enableWebSearch?: boolean;
    /** Credits; when given it is the reservation. */
    costBudget?: number;
  };
}

/** Usage as the agent reports it in `{"type":"usage", ...}` lines. */
export interface Usage {
  input_tokens: number;
  output_tokens: number;
  web_searches: number;
}

export type Pricing = GatewayConfig['pricing'];

/** The request defaults (docs/agent-protocol.md): 50 iterations, web search on. */
export const DEFAULT_MAX_ITERATIONS = 50;
/** Tokens each iteration sends besides the vision: system prompt, tool results, workspace context. */
export const CONTEXT_TOKENS_PER_ITERATION = 4000;
/** Tokens each iteration is expected to write. */
export const OUTPUT_TOKENS_PER_ITERATION = 1000;
/** Web searches per iteration when web search is enabled. */
export const WEB_SEARCHES_PER_ITERATION = 1;
/** The smallest reservation: a hold of zero would not be a hold. */
export const MIN_RESERVATION = 1 as Micros;

/**
 * Prices usage and estimates what an execute request will cost, in integer
 * micros (prices are read from their decimal text, never multiplied as floats).
 *
 * Estimate, for `n = maxIterations` (default 50):
 *   input_tokens  = n * (ceil(chars(vision) / 4) + 4000)
 *   output_tokens = n * 1000
 *   web_searches  = n * 1 if enableWebSearch (default true), else 0
 *   cost = ceil((input_tokens * per_1k_input + output_tokens * per_1k_output) / 1000)
 *          + web_searches * per_web_search                      (prices in micros)
 * `chars` counts Unicode code points. See docs/credits.md for a worked example.
 */
export class CostEstimator {
  private readonly inPer1k: bigint;
  private readonly outPer1k: bigint;
  private readonly perSearch: bigint;

  constructor(pricing: Pricing) {
    // Prices come from the validated config; a price finer than a micro is a config error, said at start-up.
    this.inPer1k = BigInt(
      parseCredits(pricing.per_1k_input_tokens, 'pricing.per_1k_input_tokens', { allowZero: true }),
    );
    this.outPer1k = BigInt(
      parseCredits(pricing.per_1k_output_tokens, 'pricing.per_1k_output_tokens', { allowZero: true }),
    );
    this.perSearch = BigInt(parseCredits(pricing.per_web_search, 'pricing.per_web_search', { allowZero: true }));
  }

  /**
   * What usage costs, rounded up to the micro. Price cumulative totals: rounding
   * happens once per call, so pricing increments separately can only cost more.
   */
  priceUsage(usage: Usage): Micros {
    const input = BigInt(count(usage.input_tokens, 'input_tokens'));
    const output = BigInt(count(usage.output_tokens, 'output_tokens'));
    const searches = BigInt(count(usage.web_searches, 'web_searches'));
    const tokenMicrosTimes1000 = input * this.inPer1k + output * this.outPer1k;
    const tokenMicros = (tokenMicrosTimes1000 + 999n) / 1000n; // ceiling division on non-negatives
    const total = tokenMicros + searches * this.perSearch;
    if (total > BigInt(Number.MAX_SAFE_INTEGER))
      throw invalidField('usage is too large to price', [{ field: 'usage', message: 'too large' }]);
    return toMicros(Number(total));
  }

  /** The usage the formula expects from a request (see the class comment). */
  estimateUsage(request: CostRequest): Usage {
    const iterations = request.options?.maxIterations ?? DEFAULT_MAX_ITERATIONS;
    if (!Number.isSafeInteger(iterations) || iterations < 1) {
      throw invalidField('options.maxIterations must be a positive integer', [
        { field: 'options.maxIterations', message: 'must be a positive integer' },
      ]);
    }
    const webSearch = request.options?.enableWebSearch ?? true;
    const chars = [...request.vision].length;
    const visionTokens = Math.ceil(chars / 4); // integer division rounded up; chars is an integer
    return {
      input_tokens: iterations * (visionTokens + CONTEXT_TOKENS_PER_ITERATION),
      output_tokens: iterations * OUTPUT_TOKENS_PER_ITERATION,
      web_searches: webSearch ? iterations * WEB_SEARCHES_PER_ITERATION : 0,
    };
  }

  /** The estimated cost of a request, in micros. */
  estimate(request: CostRequest): Micros {
    return this.priceUsage(this.estimateUsage(request));
  }

  /** What to reserve for a request: its `costBudget` when given, else the estimate (at least 1 micro). */
  reservationFor(request: CostRequest): Micros {
    const budget = request.options?.costBudget;
    if (budget !== undefined) return parseCredits(budget, 'options.costBudget');
    return maxMicros(this.estimate(request), MIN_RESERVATION);
  }
}

function count(n: number, field: string): number {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw invalidField(`${field} must be a non-negative integer`, [
      { field, message: 'must be a non-negative integer' },
    ]);
  }
  return n;
}
