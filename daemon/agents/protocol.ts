/**
 * Validation of the agent protocol (schemas/agent-protocol.schema.json): the
 * request the gateway writes and the lines the agent answers with. A line is
 * trusted only when it parses as JSON and matches one event shape exactly.
 */
import { createAjv, type ValidateFunction } from '../schemas.js';
import type { AgentEvent, PureAgentRequest } from './types.js';

export const AGENT_PROTOCOL_SCHEMA_ID = 'https://keen.invalid/schemas/agent-protocol.schema.json';

/** Compiled validators of the two protocol directions. */
export interface AgentProtocol {
  /** The event a stdout line holds, or null when the line is not exactly one valid event. */
  parseEventLine(line: string): AgentEvent | null;
  /** True when `value` is exactly a valid stdin request. */
  isPureRequest(value: unknown): value is PureAgentRequest;
}

/** Builds the validators from the shared ajv (every schema under schemas/). */
export function createAgentProtocol(ajv = createAjv()): AgentProtocol {
  const event = ajv.getSchema(`${AGENT_PROTOCOL_SCHEMA_ID}#/$defs/AgentEvent`) as
    | ValidateFunction<AgentEvent>
    | undefined;
  const request = ajv.getSchema(`${AGENT_PROTOCOL_SCHEMA_ID}#/$defs/PureAgentRequest`) as
    | ValidateFunction<PureAgentRequest>
    | undefined;
  if (!event || !request) throw new Error('agent-protocol schema is not loaded');
  return {
    parseEventLine(line: string): AgentEvent | null {
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        return null;
      }
      return event(value) ? value : null;
    },
    isPureRequest(value: unknown): value is PureAgentRequest {
      return request(value);
    },
  };
}
