import type { Clock } from '../clock.js';
import type { Logger } from '../logger.js';
import type { CreditLedger, UsedMicros } from './ledger.js';

export interface CreditReaperOptions {
  ledger: CreditLedger;
  clock: Clock;
  logger: Logger;
  /** How often to look for expired reservations. Default 15 s. */
  intervalMs?: number;
  /** What an expired reservation's session used (e.g. the session's priced usage); default 0. */
  usedMicros?: UsedMicros;
}

/**
 * Runs `ledger.reapExpired()` on a timer, so no credit stays held by a
 * reservation whose daemon died. Several daemons may run one each: every
 * reservation is settled under its account lock, exactly once.
 */
export class CreditReaper {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<number> | null = null;

  constructor(private readonly options: CreditReaperOptions) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.options.intervalMs ?? 15_000);
    this.timer.unref();
  }

  /** One pass now (also what the timer calls); overlapping passes are not started. */
  async tick(): Promise<number> {
    if (this.running) return this.running;
    const opts = this.options.usedMicros ? { usedMicros: this.options.usedMicros } : {};
    this.running = this.options.ledger
      .reapExpired(this.options.clock.now(), opts)
      .then((n) => {
        if (n > 0) this.options.logger.info({ reaped: n }, 'settled expired credit reservations');
        return n;
      })
      .catch((err: unknown) => {
        this.options.logger.warn({ err: { message: err instanceof Error ? err.message : String(err) } }, 'credit reaper pass failed');
        return 0;
      })
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }
}
