/**
 * A one-line progress display for the long jobs (`credits verify`, `audit verify`,
 * `audit export`), redrawn in place on standard error, and only when standard error
 * is a terminal: a pipe, a file or a CI log never sees it, and standard output
 * (the command's result, --json or JSON Lines) is never touched.
 */
export interface Progress {
  /** Counts `n` more items done (the export's entries). */
  add(n?: number): void;
  /** Clears the line; with `final`, leaves that line on the terminal instead. */
  done(final?: string): void;
}

export interface ProgressFrame {
  /** Items counted with add(). */
  count: number;
  /** Seconds since the job started. */
  elapsed: number;
  /** Items per second since the start (0 in the first half second). */
  rate: number;
}

const REDRAW_MS = 250;
const CLEAR = '\r\x1b[K';

const quiet: Progress = { add: () => undefined, done: () => undefined };

/** Thousands separated by commas, for people: 1,234,567. */
export function grouped(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/**
 * Starts a display that draws `render(frame)` at once and then every 250 ms, or a
 * display that does nothing when `stream` (default: standard error) is not a terminal.
 */
export function startProgress(
  render: (frame: ProgressFrame) => string,
  stream: NodeJS.WriteStream = process.stderr,
): Progress {
  if (!stream.isTTY) return quiet;
  const started = performance.now();
  let count = 0;
  const frame = (): ProgressFrame => {
    const elapsed = (performance.now() - started) / 1000;
    return { count, elapsed, rate: elapsed >= 0.5 ? count / elapsed : 0 };
  };
  // Never wider than the terminal: a wrapped line could not be redrawn in place.
  const fit = (text: string) => text.slice(0, Math.max(20, (stream.columns || 80) - 1));
  const draw = () => stream.write(`${CLEAR}${fit(render(frame()))}`);
  draw();
  const timer = setInterval(draw, REDRAW_MS);
  timer.unref();
  let finished = false;
  return {
    add(n = 1) {
      count += n;
    },
    done(final?: string) {
      if (finished) return;
      finished = true;
      clearInterval(timer);
      stream.write(final === undefined ? CLEAR : `${CLEAR}${final}\n`);
    },
  };
}
