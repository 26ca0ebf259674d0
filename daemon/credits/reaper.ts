import type { Clock } from '../clock.js';
import { Periodic } from '../periodic.js';
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
  /** Reservations of sessions this daemon still runs are its own to settle (see `CreditLedger.reapExpired`). */
  skip?: (sessionId: string | null) => boolean;
  /** After each reaped reservation's transaction committed. */
  onReaped?: (reservationId: string) => void | Promise<void>;
}

/**
 * Runs `ledger.reapExpired()` on a timer, so no credit stays held by a
 * reservation whose daemon died. Several daemons may run one each: every
 * reservation is settled under its account lock, exactly once.
 */
export class CreditReaper {
  private readonly periodic = new Periodic(() => this.pass());

  constructor(private readonly options: CreditReaperOptions) {}

  start(): void {
    this.periodic.start(this.options.intervalMs ?? 15_000);
  }

  /** One pass now (also what the timer calls); overlapping passes are not started. */
  tick(): Promise<number> {
    return this.periodic.run();
  }

  private pass(): Promise<number> {
    const opts = {
      ...(this.options.usedMicros ? { usedMicros: this.options.usedMicros } : {}),
      ...(this.options.skip ? { skip: this.options.skip } : {}),
      ...(this.options.onReaped ? { onReaped: this.options.onReaped } : {}),
    };
    return this.options.ledger
      .reapExpired(this.options.clock.now(), opts)
      .then((n) => {
        if (n > 0) this.options.logger.info({ reaped: n }, 'settled expired credit reservations');
        return n;
      })
      .catch((err: unknown) => {
        this.options.logger.warn(
          { err: { message: err instanceof Error ? err.message : String(err) } },
          'credit reaper pass failed',
        );
        return 0;
      });
  }

  stop(): Promise<void> {
    return this.periodic.stop();
  }
}
