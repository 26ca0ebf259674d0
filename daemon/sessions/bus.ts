import { EventEmitter } from 'node:events';

/** A stored session event as the stream and the events endpoint show it. */
export interface SessionEvent {
  type: string;
  session_id: string;
  seq: number;
  ts: string;
  data: Record<string, unknown>;
}

/** Routing info that travels with an event on the bus, never to clients. */
export interface BusEnvelope {
  userId: string;
  tenantId: string | null;
  event: SessionEvent;
}

/**
 * Fans session events out to stream connections. In-process by default; the
 * Redis implementation lets a client on daemon B see a session running on A.
 * Events are stored before they are published, so a subscriber that missed one
 * can always replay it from the database.
 */
export interface EventBus {
  publish(envelope: BusEnvelope): Promise<void>;
  subscribe(listener: (envelope: BusEnvelope) => void): () => void;
  close(): Promise<void>;
}

export class MemoryEventBus implements EventBus {
  private readonly emitter = new EventEmitter();
  constructor() {
    this.emitter.setMaxListeners(0);
  }
  async publish(envelope: BusEnvelope): Promise<void> {
    this.emitter.emit('event', envelope);
  }
  subscribe(listener: (envelope: BusEnvelope) => void): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }
  async close(): Promise<void> {
    this.emitter.removeAllListeners();
  }
}
