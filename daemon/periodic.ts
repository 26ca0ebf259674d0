/**
 * The two halves of a background job, written once. `run()` is single-flight:
 * a call while a pass runs gets that pass's promise, so passes never overlap
 * (the timer's and an operator's or a test's). `start()` runs a tick on a timer
 * that does not keep the process alive; `stop()` ends the timer and waits for
 * the pass in flight, `cancel()` only ends the timer.
 */
export class Periodic<T> {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<T> | null = null;

  constructor(private readonly pass: () => Promise<T>) {}

  /** One pass now; while one runs, that one. */
  run(): Promise<T> {
    return (this.running ??= this.pass().finally(() => {
      this.running = null;
    }));
  }

  /**
   * Calls `tick` (default: `run()`, its promise dropped: a pass that may fail
   * passes a tick that handles the failure) every `intervalMs`. The first call:
   * at once with `immediately`, after `firstDelayMs` when given, else after
   * `intervalMs`. Does nothing when already started.
   */
  start(intervalMs: number, options: { immediately?: boolean; firstDelayMs?: number; tick?: () => void } = {}): void {
    if (this.timer) return;
    const tick = options.tick ?? (() => void this.run());
    const repeat = () => {
      this.timer = setInterval(tick, intervalMs);
      this.timer.unref();
    };
    if (options.immediately) tick();
    if (options.firstDelayMs === undefined) return repeat();
    this.timer = setTimeout(() => {
      tick();
      repeat();
    }, options.firstDelayMs);
    this.timer.unref();
  }

  /** Ends the timer (a pass in flight goes on). */
  cancel(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      clearInterval(this.timer);
    }
    this.timer = null;
  }

  /** Ends the timer and waits for the pass in flight. */
  async stop(): Promise<void> {
    this.cancel();
    await this.running;
  }
}
