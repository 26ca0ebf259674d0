import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedWebhook {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** What the receiver answers; `received` is the request index (0-based). */
export type Respond = (req: IncomingMessage, res: ServerResponse, received: number) => void;

/**
 * A real HTTP server on 127.0.0.1 standing in for a user's webhook endpoint. It
 * counts TCP connections too, so a test can prove nothing reached it.
 */
export class Receiver {
  readonly received: ReceivedWebhook[] = [];
  connections = 0;
  respond: Respond;

  private constructor(
    private readonly server: http.Server,
    respond: Respond,
  ) {
    this.respond = respond;
  }

  static async start(respond: Respond = (_req, res) => res.end('ok')): Promise<Receiver> {
    const server = http.createServer();
    const receiver = new Receiver(server, respond);
    server.on('connection', () => {
      receiver.connections += 1;
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const index = receiver.received.length;
        receiver.received.push({
          method: req.method ?? '',
          path: req.url ?? '',
          headers: req.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        });
        receiver.respond(req, res, index);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return receiver;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  url(path = '/hook', scheme = 'http', host = '127.0.0.1'): string {
    return `${scheme}://${host}:${this.port}${path}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A status for each request in turn (the last one repeats). */
export function statuses(...codes: number[]): Respond {
  return (_req, res, i) => {
    res.statusCode = codes[Math.min(i, codes.length - 1)]!;
    res.end();
  };
}
