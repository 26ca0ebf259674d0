import { presentApiKey } from '../auth/presenters.js';
import type { Clock } from '../clock.js';
import type { Logger } from '../logger.js';
import { Periodic } from '../periodic.js';
import type { Database } from '../storage/database.js';
import type { ApiKeyExpiryRepository } from '../storage/repos/api-key-expiry.js';
import type { WebhookService } from './service.js';

/** How long before its expiry an API key is announced (`api_key.expiring`). */
export const EXPIRY_NOTICE_MS = 7 * 86_400_000;
const PER_PASS = 200;

/**
 * Sends `api_key.expiring` once per key, 7 days before it expires, to its
 * owner's endpoints that want it. A pass claims each key by setting
 * `expiry_notified_at` where it is still null, in the transaction that queues
 * the event, so several daemons send it once. A key whose expiry is changed is
 * announced again for its new date.
 */
export class KeyExpiryNotices {
  private readonly periodic = new Periodic(() => this.pass());

  constructor(
    private readonly deps: {
      /** Opens the transaction that claims a key and queues its event. */
      database: Database;
      keys: ApiKeyExpiryRepository;
      clock: Clock;
      logger: Logger;
      webhooks: WebhookService;
      intervalMs?: number;
    },
  ) {}

  start(): void {
    this.periodic.start(this.deps.intervalMs ?? 600_000, {
      firstDelayMs: 20_000,
      tick: () =>
        void this.periodic.run().catch((err: unknown) => {
          this.deps.logger.warn(
            { err: { message: err instanceof Error ? err.message : String(err) } },
            'api key expiry notices failed',
          );
        }),
    });
  }

  stop(): Promise<void> {
    return this.periodic.stop();
  }

  /** One pass now (shares a pass in flight); how many keys were announced. */
  runOnce(): Promise<number> {
    return this.periodic.run();
  }

  private async pass(): Promise<number> {
    const now = this.deps.clock.now();
    const due = await this.deps.keys.dueForNotice(now, now + EXPIRY_NOTICE_MS, PER_PASS);
    let sent = 0;
    for (const key of due) {
      const claimed = await this.deps.database.transaction(async (trx) => {
        if (!(await this.deps.keys.claimNotice(trx, key.id, now))) return false;
        await this.deps.webhooks.emit(trx, {
          type: 'api_key.expiring',
          userIds: [key.user_id],
          tenantId: key.tenant_id,
          data: { api_key: presentApiKey(key, now) },
        });
        return true;
      });
      if (claimed) sent += 1;
    }
    return sent;
  }
}
