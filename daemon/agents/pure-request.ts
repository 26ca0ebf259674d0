/**
 * The request an agent receives, built by allow-list (docs/agent-protocol.md,
 * "Start"): the agent sees no gateway state. Every field is copied one by one
 * into a new object, and each value is checked for its primitive type, so
 * nothing from a richer object (user id, credit balance, tier, limits) can ride
 * along, not even nested.
 */
import type { PureAgentRequest } from './types.js';

/** Defaults for options the caller left out (docs/agent-protocol.md). */
export const PURE_REQUEST_DEFAULTS = {
  maxIterations: 50,
  enableWebSearch: true,
  enableStreaming: true,
  showProgress: true,
} as const;

/** What the execute path knows when it builds the agent's request. */
export interface PureRequestInput {
  vision: string;
  workingDirectory: string;
  options?: {
    maxIterations?: number;
    enableWebSearch?: boolean;
    enableStreaming?: boolean;
    showProgress?: boolean;
  } | null;
  /** From the tier (`tiers.<tier>.max_agents_per_session`). */
  maxAgents: number;
}

const bool = (v: unknown, fallback: boolean): boolean => (typeof v === 'boolean' ? v : fallback);
const int = (v: unknown, fallback: number): number => (typeof v === 'number' && Number.isSafeInteger(v) ? v : fallback);

/**
 * A new `PureAgentRequest` holding only `vision`, `workingDirectory` and the five
 * options. Unknown fields of `input` or `input.options` are ignored; a value of
 * the wrong type falls back to the default. `vision` is taken as given: sanitize
 * it with `sanitizeVision` before validating its length.
 */
export function buildPureRequest(input: PureRequestInput): PureAgentRequest {
  const options = input.options ?? {};
  return {
    vision: String(input.vision),
    workingDirectory: String(input.workingDirectory),
    options: {
      maxIterations: int(options.maxIterations, PURE_REQUEST_DEFAULTS.maxIterations),
      maxAgents: int(input.maxAgents, 1),
      enableWebSearch: bool(options.enableWebSearch, PURE_REQUEST_DEFAULTS.enableWebSearch),
      enableStreaming: bool(options.enableStreaming, PURE_REQUEST_DEFAULTS.enableStreaming),
      showProgress: bool(options.showProgress, PURE_REQUEST_DEFAULTS.showProgress),
    },
  };
}

/**
 * Re-copies a request by allow-list. The runner serializes this, never the object
 * it was handed, so a caller passing a structurally wider object leaks nothing.
 */
export function copyPureRequest(req: PureAgentRequest): PureAgentRequest {
  return buildPureRequest({
    vision: req.vision,
    workingDirectory: req.workingDirectory,
    options: req.options,
    maxAgents: req.options?.maxAgents,
  } as PureRequestInput);
}

// C0 controls except \t (09) and \n (0a), DEL, and C1 controls.
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * Cleans a vision before its length is validated: Unicode NFC, line endings
 * `\r\n` (and a lone `\r`) become `\n`, control characters other than `\n` and
 * `\t` are removed, unpaired surrogates become U+FFFD, and the ends are trimmed.
 */
export function sanitizeVision(v: string): string {
  return String(v)
    .replace(LONE_SURROGATE, '\ufffd')
    .normalize('NFC')
    .replace(/\r\n?/g, '\n')
    .replace(CONTROL, '')
    .trim();
}
