/**
 * Splits a byte stream into `\n`-terminated lines with a bound on the line
 * length, so an agent printing an endless line cannot grow the gateway's memory.
 * Lines are decoded as UTF-8 only once complete, so a multi-byte character split
 * across chunks survives.
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private size = 0;
  private overflowing = false;

  /**
   * @param maxBytes longest line kept (without the `\n`)
   * @param onLine a complete line, without its `\n` (a trailing `\r` is removed)
   * @param onOverflow a line longer than `maxBytes`, called once with its first bytes; the rest of the line is dropped
   */
  constructor(
    private readonly maxBytes: number,
    private readonly onLine: (line: string) => void,
    private readonly onOverflow: (prefix: string) => void,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(10, start);
      const piece = chunk.subarray(start, nl === -1 ? chunk.length : nl);
      if (!this.overflowing) {
        if (this.size + piece.length > this.maxBytes) {
          this.overflowing = true;
          const prefix = Buffer.concat([...this.parts, piece])
            .subarray(0, 200)
            .toString('utf8');
          this.reset();
          this.overflowing = true;
          this.onOverflow(prefix);
        } else {
          this.parts.push(piece);
          this.size += piece.length;
        }
      }
      if (nl === -1) return;
      if (!this.overflowing) this.emit();
      this.reset();
      start = nl + 1;
    }
  }

  /** The stream ended: a last line without `\n` still counts. */
  end(): void {
    if (!this.overflowing && this.size > 0) this.emit();
    this.reset();
  }

  private emit(): void {
    const line = Buffer.concat(this.parts, this.size).toString('utf8');
    this.onLine(line.endsWith('\r') ? line.slice(0, -1) : line);
  }

  private reset(): void {
    this.parts = [];
    this.size = 0;
    this.overflowing = false;
  }
}
