/**
 * The gateway's public base URL (`server.public_url`), resolved once: the configured one, or,
 * when none is configured (`public_url_auto`), the address the server actually listens on,
 * known only after `listen()` (port 0 picks one). Presenters that build links (a session's
 * `streaming_url`) read it here; nothing writes the configuration at run time.
 */
export class PublicUrl {
  private url: string;

  constructor(server: { public_url: string; public_url_auto: boolean }) {
    this.url = server.public_url;
    this.auto = server.public_url_auto;
  }

  private readonly auto: boolean;

  /** The base URL, without a trailing slash. */
  get(): string {
    return this.url;
  }

  /** daemon/server.ts, once listening: with no configured public URL, links follow the real address. */
  listening(url: string): void {
    if (this.auto) this.url = url.replace(/\/+$/, '');
  }
}
