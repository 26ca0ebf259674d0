import { createHash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Clock } from '../clock.js';
import { unavailable } from '../errors.js';
import { isRedisUnavailableError } from '../redis.js';
import type { StreamGrant } from './grants.js';

/** How long a ticket lives (docs/stream.md; single use, 30 s). */
export const TICKET_TTL_MS = 30_000;

const TICKET_RE = /^stk_[A-Za-z0-9_-]{43}$/;

/** Only a hash of a ticket is ever stored, so a leaked store holds nothing usable. */
const hashTicket = (ticket: string): string => createHash('sha256').update(ticket).digest('hex');

/**
 * Single-use stream tickets for browsers (which cannot set `Authorization` on a
 * WebSocket). A ticket stands for the grant of the request that asked for it.
 */
export interface TicketStore {
  put(hash: string, grant: StreamGrant, ttlMs: number): Promise<void>;
  /** The grant, at most once per ticket; null when unknown, used or expired. */
  take(hash: string): Promise<StreamGrant | null>;
  close(): Promise<void>;
}

/** One daemon (no Redis): a map with expiry, swept as it is written. */
export class MemoryTicketStore implements TicketStore {
  private readonly tickets = new Map<string, { grant: StreamGrant; expiresAt: number }>();
  constructor(private readonly clock: Clock) {}

  async put(hash: string, grant: StreamGrant, ttlMs: number): Promise<void> {
    const now = this.clock.now();
    for (const [k, v] of this.tickets) if (v.expiresAt <= now) this.tickets.delete(k);
    this.tickets.set(hash, { grant, expiresAt: now + ttlMs });
  }

  async take(hash: string): Promise<StreamGrant | null> {
    const t = this.tickets.get(hash);
    if (!t) return null;
    this.tickets.delete(hash);
    return t.expiresAt > this.clock.now() ? t.grant : null;
  }

  async close(): Promise<void> {
    this.tickets.clear();
  }
}

/** Several daemons: SET NX PX to issue, GETDEL to redeem, so exactly one daemon accepts a ticket once. */
export class RedisTicketStore implements TicketStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ownsConnection: boolean,
  ) {}

  /** Commands fail at once while disconnected (no offline queue): give a fresh connection a moment to come up. */
  private async ready(): Promise<void> {
    if (this.redis.status === 'ready') return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.redis.once('ready', () => resolve())),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, 1000);
      }),
    ]);
    clearTimeout(timer);
  }

  async put(hash: string, grant: StreamGrant, ttlMs: number): Promise<void> {
    try {
      await this.ready();
      await this.redis.set(`${this.prefix}${hash}`, JSON.stringify(grant), 'PX', ttlMs, 'NX');
    } catch (err) {
      throw isRedisUnavailableError(err) ? unavailable('stream tickets are unavailable', err) : err;
    }
  }

  async take(hash: string): Promise<StreamGrant | null> {
    let raw: string | null;
    try {
      await this.ready();
      raw = await this.redis.getdel(`${this.prefix}${hash}`);
    } catch (err) {
      throw isRedisUnavailableError(err) ? unavailable('stream tickets are unavailable', err) : err;
    }
    return raw ? (JSON.parse(raw) as StreamGrant) : null;
  }

  async close(): Promise<void> {
    if (this.ownsConnection) await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/** Issues and redeems tickets over a store. */
export class StreamTickets {
  constructor(
    private readonly store: TicketStore,
    private readonly clock: Clock,
  ) {}

  async issue(grant: StreamGrant): Promise<{ ticket: string; expires_at: string }> {
    const ticket = `stk_${randomBytes(32).toString('base64url')}`;
    const now = this.clock.now();
    // A ticket never outlives the credential it was made from.
    const ttl = grant.expiresAt === null ? TICKET_TTL_MS : Math.max(1, Math.min(TICKET_TTL_MS, grant.expiresAt - now));
    await this.store.put(hashTicket(ticket), grant, ttl);
    return { ticket, expires_at: new Date(now + ttl).toISOString() };
  }

  /** The ticket's grant, once; null for a malformed, unknown, used or expired ticket (no store read for junk). */
  async redeem(ticket: string): Promise<StreamGrant | null> {
    if (!TICKET_RE.test(ticket)) return null;
    return this.store.take(hashTicket(ticket));
  }

  close(): Promise<void> {
    return this.store.close();
  }
}
