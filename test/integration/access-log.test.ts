import { expect } from 'chai';
import net from 'node:net';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';

/** One request as raw bytes (fetch normalizes paths; an attacker does not), answered with its status line. */
function raw(url: string, target: string, headers: Record<string, string> = {}): Promise<string> {
  const { hostname, port } = new URL(url);
  const head = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(port), hostname, () =>
      sock.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${head}\r\n`),
    );
    let out = '';
    sock.on('data', (d) => (out += String(d)));
    sock.on('end', () => resolve(out.split('\r\n')[0]!));
    sock.on('error', reject);
    sock.setTimeout(5000, () => sock.destroy(new Error('timeout')));
  });
}

/** The access-log lines the daemon wrote, parsed: each must be one JSON object on its own line. */
function accessLines(d: TestDaemon, from: number): Array<Record<string, unknown>> {
  const text = d.logs.slice(from).join('');
  expect(text.endsWith('\n')).to.equal(true);
  return text
    .slice(0, -1)
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((l) => l.msg === 'request');
}

describe('access log: hostile requests', () => {
  let d: TestDaemon;
  before(async () => {
    // 127.0.0.1 a trusted proxy: X-Forwarded-For is read, so a forged one reaches the client-address code.
    d = await startDaemon({ config: { server: { trusted_proxies: ['127.0.0.1'] } } });
  });
  after(async () => d?.stop());

  it('writes one parseable line per request whatever the path, request id and forwarding headers hold', async () => {
    const paths = [
      '/v1/"quoted"',
      '/v1/back\\slash\\"',
      '/v1/x","level":"fatal","msg":"forged',
      '/v1/{"req_id":"req_forged"}',
      '/v1/%22%0a%0d%00%E2%80%A8',
      "/v1/'<script>'",
      '/health/live/../../v1/x',
    ];
    const before = d.logs.length;
    for (const p of paths) {
      const status = await raw(d.url, `${p}?token=canary-query`, {
        'X-Request-Id': 'abcdefgh"},{"forged":"x',
        'X-Forwarded-For': '1.2.3.4", "ip":"6.6.6.6',
        'User-Agent': 'agent"\\\u00e9',
      });
      expect(status).to.match(/^HTTP\/1\.1 (404|400) /);
    }
    const lines = accessLines(d, before);
    expect(lines.map((l) => l.path)).to.deep.equal(paths);
    for (const l of lines) {
      expect(Object.keys(l)).to.deep.equal([
        'level',
        'time',
        'service',
        'req_id',
        'method',
        'route',
        'path',
        'status',
        'ms',
        'ip',
        'msg',
      ]);
      expect(l.req_id).to.match(/^req_[0-9a-z]{26}$/);
      expect(l.ip).to.equal('127.0.0.1');
      expect(l.route).to.equal('unmatched');
      expect(l).not.to.have.property('forged');
    }
    expect(d.logs.slice(before).join('')).not.to.include('canary-query');
  });

  it('keeps a well-formed incoming request id and logs the client a trusted proxy names', async () => {
    const before = d.logs.length;
    expect(
      await raw(d.url, '/v1/nothing-here', { 'X-Request-Id': 'trace:abc.DEF-123', 'X-Forwarded-For': '203.0.113.9' }),
    ).to.include(' 404 ');
    const [line] = accessLines(d, before);
    expect(line).to.include({
      req_id: 'trace:abc.DEF-123',
      ip: '203.0.113.9',
      method: 'GET',
      status: 404,
      level: 'info',
    });
    expect(line!.ms).to.be.a('number');
  });
});
