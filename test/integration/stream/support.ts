import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { newId } from '../../../daemon/ids.js';
import type { SessionEvent } from '../../../daemon/sessions/bus.js';
import type { TestDaemon } from '../../helpers/daemon.js';
import type { TestUser } from '../../helpers/factories.js';

export type Daemon = Pick<TestDaemon, 'url' | 'container'>;

/** Any server message; events are the ones with a seq. */
export type StreamMessage = Record<string, any>;

export interface Credentials {
  token?: string;
  apiKey?: string;
  /** Extra query string, without the leading `?`. */
  query?: string;
  headers?: Record<string, string>;
}

export const streamUrl = (d: { url: string }, query = ''): string =>
  `${d.url.replace(/^http/, 'ws')}/v1/stream${query ? `?${query}` : ''}`;

function headersOf(creds: Credentials): Record<string, string> {
  const h: Record<string, string> = { ...creds.headers };
  if (creds.token) h.authorization = `Bearer ${creds.token}`;
  if (creds.apiKey) h.authorization = `ApiKey ${creds.apiKey}`;
  return h;
}

/** A real ws client that records every message and how the connection ended. */
export class StreamClient {
  readonly messages: StreamMessage[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: Array<() => void> = [];

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.messages.push(JSON.parse(String(data)) as StreamMessage);
      this.wake();
    });
    // A test that provokes an error reads it from the close code.
    ws.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      ws.once('close', (code, reason) => {
        resolve({ code, reason: String(reason) });
        this.wake();
      }),
    );
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Stored events received, in arrival order. */
  events(sessionId?: string): SessionEvent[] {
    return this.messages.filter(
      (m) => typeof m.seq === 'number' && (!sessionId || m.session_id === sessionId),
    ) as SessionEvent[];
  }

  errors(): StreamMessage[] {
    return this.messages.filter((m) => m.type === 'error');
  }

  send(message: unknown): void {
    this.ws.send(typeof message === 'string' ? message : JSON.stringify(message));
  }

  /** Waits (bounded) until `predicate` holds over the messages so far. */
  async until(
    predicate: (messages: StreamMessage[]) => boolean,
    timeoutMs = 15_000,
    what = 'condition',
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.messages)) {
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.messages).slice(0, 2000)}`);
      if (this.ws.readyState === WebSocket.CLOSED)
        throw new Error(
          `connection closed while waiting for ${what}; got ${JSON.stringify(this.messages).slice(0, 2000)}`,
        );
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits for the final session.status event of a session. */
  untilEnd(sessionId: string, timeoutMs = 20_000): Promise<void> {
    return this.until(
      (m) => m.some((x) => x.session_id === sessionId && x.type === 'session.status' && x.data?.status !== 'running'),
      timeoutMs,
      `the end of ${sessionId}`,
    );
  }

  async closedWithin(timeoutMs: number): Promise<{ code: number; reason: string }> {
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([
      this.closed,
      new Promise<null>((resolve) => {
        timer = setTimeout(() => resolve(null), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!r) throw new Error(`connection still open after ${timeoutMs} ms`);
    return r;
  }

  close(): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
  }
}

const opened: StreamClient[] = [];
/** Terminates every client a test opened (call from afterEach). */
export function closeClients(): void {
  for (const c of opened.splice(0)) c.close();
}

/** Connects and waits for `connection_established`. */
export async function connect(d: { url: string }, creds: Credentials): Promise<StreamClient> {
  const ws = new WebSocket(streamUrl(d, creds.query), { headers: headersOf(creds) });
  const client = new StreamClient(ws);
  opened.push(client);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no connection within 10 s')), 10_000);
    ws.once('unexpected-response', (_req, res) => {
      clearTimeout(timer);
      reject(new Error(`upgrade refused: ${res.statusCode}`));
    });
    ws.once('open', () => {
      clearTimeout(timer);
      resolve();
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  await client.until((m) => m.length > 0, 10_000, 'connection_established');
  return client;
}

export interface Refusal {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

/** Attempts an upgrade that must be refused; resolves with the HTTP answer (rejects when it was accepted). */
export async function refused(d: { url: string }, creds: Credentials): Promise<Refusal> {
  const ws = new WebSocket(streamUrl(d, creds.query), { headers: headersOf(creds) });
  return new Promise<Refusal>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no answer within 10 s')), 10_000);
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += String(c)));
      res.on('end', () => {
        clearTimeout(timer);
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON: the test will say so
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      });
    });
    ws.once('open', () => {
      clearTimeout(timer);
      ws.terminate();
      reject(new Error('upgrade was accepted'));
    });
    ws.once('error', (err) => {
      if (!String(err.message).includes('Unexpected server response')) {
        clearTimeout(timer);
        reject(err);
      }
    });
  });
}

/**
 * A finished session owned by `u` with `count` stored events (the last one its
 * final status), written straight into storage: deterministic and fast.
 */
export async function seedSession(
  d: Daemon,
  u: TestUser,
  count: number,
  options: { dataBytes?: number; status?: 'running' | 'completed' } = {},
): Promise<string> {
  const db = d.container.database.db;
  const now = Date.now();
  const id = newId('ses', now);
  const status = options.status ?? 'completed';
  await db
    .insertInto('sessions')
    .values({
      id,
      user_id: u.user.id,
      tenant_id: u.user.tenant_id,
      status,
      current_phase: 'BUILD',
      vision: 'seeded for a stream test',
      options: '{}',
      webhook_url: null,
      reservation_id: newId('res', now),
      reserved: 1_000_000,
      estimated_cost: 1_000_000,
      cost_so_far: 0,
      final_cost: status === 'running' ? null : 0,
      input_tokens: 0,
      output_tokens: 0,
      web_searches: 0,
      owner: 'stream-test',
      last_seq: count,
      cancel_requested_at: null,
      end_reason: status === 'running' ? null : 'completed',
      summary: null,
      request_id: null,
      lease_epoch: 1,
      created_at: now,
      updated_at: now,
      ended_at: status === 'running' ? null : now,
    })
    .execute();
  const filler = options.dataBytes
    ? randomBytes(Math.ceil(options.dataBytes / 2))
        .toString('hex')
        .slice(0, options.dataBytes)
    : 'x';
  const rows = Array.from({ length: count }, (_, i) => {
    const seq = i + 1;
    const last = seq === count && status !== 'running';
    return {
      session_id: id,
      seq,
      ts: now + seq,
      type: last ? 'session.status' : seq === 1 ? 'session.status' : 'agent.log',
      data: JSON.stringify(
        last
          ? { status, final_cost: 0, reason: 'completed' }
          : seq === 1
            ? { status: 'running' }
            : { level: 'info', message: `${seq} ${filler}` },
      ),
    };
  });
  for (let i = 0; i < rows.length; i += 100)
    await db
      .insertInto('session_events')
      .values(rows.slice(i, i + 100))
      .execute();
  return id;
}

/** The value of a counter or gauge on the daemon's registry (summed over labels unless given). */
export async function metric(d: Daemon, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = d.container.metrics.registry.getSingleMetric(name);
  if (!m) throw new Error(`no metric ${name}`);
  const { values } = await m.get();
  return values
    .filter((v) => Object.entries(labels).every(([k, x]) => String((v.labels as Record<string, unknown>)[k]) === x))
    .filter((v) => !('metricName' in v) || v.metricName === name || v.metricName === `${name}_sum`)
    .reduce((sum, v) => sum + v.value, 0);
}

/** Polls until `f` is true (bounded). */
export async function eventually(
  f: () => Promise<boolean> | boolean,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Seqs are 1..n in order, each once, ending with a final session.status. */
export function expectComplete(events: SessionEvent[]): string[] {
  const problems: string[] = [];
  events.forEach((e, i) => {
    if (e.seq !== i + 1) problems.push(`position ${i} has seq ${e.seq}`);
  });
  const last = events[events.length - 1];
  if (last?.type !== 'session.status' || last.data.status === 'running')
    problems.push(`does not end with a final status: ${JSON.stringify(last)}`);
  return problems;
}
