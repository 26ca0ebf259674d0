/**
 * Rate limit response headers, per the IETF draft "RateLimit header fields for
 * HTTP" (draft-ietf-httpapi-ratelimit-headers-08 and later, structured fields,
 * RFC 8941): https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/
 * plus the X-RateLimit-* trio most clients still read.
 */
import { GatewayError } from '../errors.js';
import type { CheckResult, PolicyResult } from './policy.js';

/** Whole seconds for a header: rounded up (never promise a budget early), at least `min`. */
export function toSeconds(ms: number, min = 0): number {
  return Math.max(min, Math.ceil(ms / 1000));
}

/** An sf-string (RFC 8941 section 3.3.3): quotes and backslashes escaped. */
function sfString(value: string): string {
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** A policy's entry in `RateLimit-Policy` (`"user";q=1000;w=3600`), made once per policy object. */
const policyEntries = new WeakMap<PolicyResult['policy'], string>();
function policyEntry(policy: PolicyResult['policy']): string {
  let entry = policyEntries.get(policy);
  if (entry === undefined) {
    entry = `${sfString(policy.name)};q=${policy.limit};w=${toSeconds(policy.windowMs, 1)}`;
    policyEntries.set(policy, entry);
  }
  return entry;
}

/** The policy names (`user`, `api_key`, `ip`) as sf-strings, made once each. */
const sfNames = new Map<string, string>();
function sfName(name: string): string {
  let quoted = sfNames.get(name);
  if (quoted === undefined) sfNames.set(name, (quoted = sfString(name)));
  return quoted;
}

/**
 * The policy that binds: among denials the one that frees up last (longest
 * retryAfterMs); otherwise the one with the fewest units left (then the longest
 * reset). Null for no results.
 */
export function mostRestrictive(results: PolicyResult[]): PolicyResult | null {
  let best: PolicyResult | null = null;
  for (const r of results) {
    if (best === null || tighter(r, best)) best = r;
  }
  return best;
}

function tighter(a: PolicyResult, b: PolicyResult): boolean {
  const da = a.decision;
  const db = b.decision;
  if (da.allowed !== db.allowed) return !da.allowed;
  if (!da.allowed && da.retryAfterMs !== db.retryAfterMs) return da.retryAfterMs > db.retryAfterMs;
  if (da.remaining !== db.remaining) return da.remaining < db.remaining;
  return da.resetMs > db.resetMs;
}

/**
 * The headers for a response whose request was checked against `results`:
 * `RateLimit-Policy` lists every policy (`"user";q=1000;w=3600`), `RateLimit`
 * and `X-RateLimit-*` describe the most restrictive one (`"user";r=998;t=3580`),
 * and a denial adds `Retry-After` (whole seconds, at least 1).
 */
export function rateLimitHeaders(results: PolicyResult[]): Record<string, string> {
  const binding = mostRestrictive(results);
  if (binding === null) return {};
  const { policy, decision } = binding;
  const reset = toSeconds(decision.resetMs);
  const headers: Record<string, string> = {
    'RateLimit-Policy':
      results.length === 1 ? policyEntry(results[0]!.policy) : results.map((r) => policyEntry(r.policy)).join(', '),
    RateLimit: `${sfName(policy.name)};r=${decision.remaining};t=${reset}`,
    'X-RateLimit-Limit': String(policy.limit),
    'X-RateLimit-Remaining': String(decision.remaining),
    'X-RateLimit-Reset': String(reset),
  };
  if (!decision.allowed) headers['Retry-After'] = String(toSeconds(decision.retryAfterMs, 1));
  return headers;
}

/** The `details` of a 429 RATE_LIMITED (same shape as a quote's admission reason). */
export interface RateLimitDetails {
  /** The policy that denied: user, api_key or ip. */
  limit: string;
  max: number;
  /** Units used in the window. */
  current: number;
  /** Seconds, as in Retry-After. */
  retry_after: number;
}

/** The details for a denied policy. */
export function denialDetails(result: PolicyResult): RateLimitDetails {
  const { policy, decision } = result;
  return {
    limit: policy.name,
    max: policy.limit,
    current: Math.max(0, policy.limit - decision.remaining),
    retry_after: toSeconds(decision.retryAfterMs, 1),
  };
}

/** The 429 RATE_LIMITED for a denied check, with its headers (Retry-After included) and details. */
export function rateLimitedError(check: CheckResult): GatewayError {
  const binding = mostRestrictive(check.results);
  if (binding === null || binding.decision.allowed) throw new Error('rateLimitedError needs a denied check');
  return new GatewayError('RATE_LIMITED', `rate limit exceeded (${binding.policy.name}); retry later`, {
    details: denialDetails(binding),
    headers: rateLimitHeaders(check.results),
  });
}
