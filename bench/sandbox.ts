/**
 * Case (g) of `npm run bench` (bench/run.ts runs the daemons): what the agent
 * sandbox costs an execute, measured as the time from sending
 * POST /v1/agents/execute to the session's first agent event reaching a client.
 *
 * The client is a WebSocket on `GET /v1/stream` opened without `?sessions=`
 * before the executes: it follows every session of its user from seq 1, so the
 * first agent event is pushed to it as soon as it is stored (no polling, and it
 * may arrive before the execute's HTTP answer; both are timed from the send).
 * One execute at a time, each waited for until its final `session.status`, so
 * no agent of an earlier run competes with the one measured.
 */
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';

/** One execute: when it was answered and when its first agent event arrived, both in ms after the send. */
export interface FirstEventSample {
  sessionId: string;
  answeredMs: number;
  firstEventMs: number;
  /** The type of the event timed (`agent.phase` for the bench's agent). */
  firstEventType: string;
}

interface Waiter {
  firstEvent: (at: number, type: string) => void;
  final: (status: string) => void;
}

/** Every session event a stream connection received, by session: the first agent event's arrival time, and the end. */
interface SessionSeen {
  firstAgentAt?: number;
  firstAgentType?: string;
  finalStatus?: string;
  waiter?: Waiter;
}

const FINAL = new Set(['completed', 'failed', 'cancelled', 'budget_exhausted', 'timed_out', 'interrupted']);

/** A stream connection of one user on one daemon, and the executes it times. */
export class FirstEventProbe {
  private readonly seen = new Map<string, SessionSeen>();

  private constructor(
    private readonly url: string,
    private readonly token: string,
    private readonly ws: WebSocket,
  ) {
    ws.on('message', (raw) => {
      const at = performance.now();
      const m = JSON.parse(String(raw)) as { type: string; session_id?: string; data?: { status?: string } };
      if (!m.session_id) return;
      let s = this.seen.get(m.session_id);
      if (!s) this.seen.set(m.session_id, (s = {}));
      if (m.type.startsWith('agent.') && s.firstAgentAt === undefined) {
        s.firstAgentAt = at;
        s.firstAgentType = m.type;
        s.waiter?.firstEvent(at, m.type);
      }
      if (m.type === 'session.status' && m.data?.status && FINAL.has(m.data.status)) {
        s.finalStatus = m.data.status;
        s.waiter?.final(m.data.status);
      }
    });
  }

  /** Connects to `baseUrl`'s stream as the holder of `token` and waits for `connection_established` (10 s at most). */
  static async open(baseUrl: string, token: string): Promise<FirstEventProbe> {
    const ws = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/v1/stream`, {
      headers: { authorization: `Bearer ${token}` },
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('stream connection not established in 10 s')), 10_000);
      ws.once('message', () => {
        clearTimeout(timer);
        resolve();
      });
      ws.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    return new FirstEventProbe(baseUrl, token, ws);
  }

  /**
   * Sends one execute and resolves once its session has ended (at most `timeoutMs`),
   * with the times of its answer and of its first agent event. Throws when the
   * execute is refused, no agent event comes, or the session does not end in time.
   */
  async once(body: string, timeoutMs = 10_000): Promise<FirstEventSample> {
    const t0 = performance.now();
    const r = await fetch(`${this.url}/v1/agents/execute`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${this.token}` },
      body,
    });
    const answeredMs = performance.now() - t0;
    const text = await r.text();
    if (r.status !== 200) throw new Error(`execute: ${r.status} ${text.slice(0, 200)}`);
    const sessionId = (JSON.parse(text) as { session: { id: string } }).session.id;
    let s = this.seen.get(sessionId);
    if (!s) this.seen.set(sessionId, (s = {}));
    const seen = s;
    const first = new Promise<{ at: number; type: string }>((resolve, reject) => {
      let firstAt: { at: number; type: string } | null =
        seen.firstAgentAt === undefined ? null : { at: seen.firstAgentAt, type: seen.firstAgentType! };
      const timer = setTimeout(
        () => reject(new Error(`session ${sessionId} did not end within ${timeoutMs} ms`)),
        timeoutMs,
      );
      const settle = (status: string) => {
        clearTimeout(timer);
        if (firstAt) resolve(firstAt);
        else reject(new Error(`session ${sessionId} ended ${status} without an agent event`));
      };
      seen.waiter = {
        firstEvent: (at, type) => (firstAt = { at, type }),
        final: settle,
      };
      if (seen.finalStatus) settle(seen.finalStatus);
    });
    try {
      const { at, type } = await first;
      return { sessionId, answeredMs, firstEventMs: at - t0, firstEventType: type };
    } finally {
      this.seen.delete(sessionId);
    }
  }

  /** The session as `GET /v1/sessions/:id` shows it (to read `sandboxed`). */
  async session(id: string): Promise<{ status: string; sandboxed: boolean | null }> {
    const r = await fetch(`${this.url}/v1/sessions/${id}`, { headers: { authorization: `Bearer ${this.token}` } });
    if (r.status !== 200) throw new Error(`GET /v1/sessions/${id}: ${r.status}`);
    return ((await r.json()) as { session: { status: string; sandboxed: boolean | null } }).session;
  }

  close(): void {
    this.ws.terminate();
  }
}

/** p50/p90/max (nearest rank) of a list of milliseconds. */
export interface Spread {
  n: number;
  p50: number;
  p90: number;
  max: number;
}

export function spread(values: number[]): Spread {
  const xs = [...values].sort((a, b) => a - b);
  const q = (p: number) => xs[Math.min(xs.length - 1, Math.max(0, Math.ceil(p * xs.length) - 1))] ?? NaN;
  return { n: xs.length, p50: q(0.5), p90: q(0.9), max: xs.at(-1) ?? NaN };
}

/**
 * Times executes on several daemons in turn (one execute on each, then again),
 * so that whatever else the machine does touches every daemon alike. Each daemon
 * gets `warmUp` uncounted executes first; at most `count` counted ones, stopping
 * at `deadlineMs` of wall time. Failed executes are counted, not timed.
 */
export async function alternate(
  probes: FirstEventProbe[],
  body: string,
  count: number,
  warmUp: number,
  deadlineMs: number,
): Promise<Array<{ samples: FirstEventSample[]; failures: string[] }>> {
  const until = Date.now() + deadlineMs;
  const out = probes.map(() => ({ samples: [] as FirstEventSample[], failures: [] as string[] }));
  for (let i = 0; i < warmUp + count && Date.now() < until; i++) {
    for (const [k, p] of probes.entries()) {
      try {
        const s = await p.once(body, Math.max(1000, Math.min(10_000, until - Date.now())));
        if (i >= warmUp) out[k]!.samples.push(s);
      } catch (err) {
        out[k]!.failures.push((err as Error).message);
      }
    }
  }
  return out;
}
