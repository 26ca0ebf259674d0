import { expect } from 'chai';
import net from 'node:net';
import { describeStorage } from '../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';

function expectEnvelope(body: any, type: string, code: string): void {
  expect(body.success).to.equal(false);
  expect(body.error.type).to.equal(type);
  expect(body.error.code).to.equal(code);
  expect(body.error.message).to.be.a('string').and.not.be.empty;
  expect(body.error).to.have.property('details');
  expect(body.request_id).to.be.a('string').and.not.be.empty;
}

/** Sends raw bytes and returns the raw response, for requests fetch refuses to make. */
function rawRequest(url: string, payload: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(port), hostname, () => sock.write(payload));
    let out = '';
    sock.on('data', (d) => (out += String(d)));
    sock.on('end', () => resolve(out));
    sock.on('error', reject);
    sock.setTimeout(5000, () => sock.destroy(new Error('timeout')));
  });
}

describeStorage('HTTP foundation', (backend) => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon({ backend });
  });
  after(async () => d?.stop());

  it('answers liveness and readiness with the database and free disk space checks', async () => {
    const live = await d.api.get('/health/live');
    expect(live.status).to.equal(200);
    expect(live.body).to.include({ success: true, status: 'ok' });
    const ready = await d.api.get('/health/ready');
    expect(ready.status).to.equal(200);
    expect(ready.body.checks).to.deep.equal({ database: 'ok', disk: 'ok' });
  });

  it('gives every response an X-Request-Id and keeps a well-formed incoming one', async () => {
    const a = await d.api.get('/health/live');
    expect(a.headers.get('x-request-id')).to.match(/^req_[0-9a-z]{26}$/);
    const b = await d.api.get('/health/live', { headers: { 'X-Request-Id': 'trace-1234-abcd' } });
    expect(b.headers.get('x-request-id')).to.equal('trace-1234-abcd');
    const c = await d.api.get('/nope', { headers: { 'X-Request-Id': 'bad id <script>' } });
    expect(c.headers.get('x-request-id')).to.match(/^req_/);
    expect(c.body.request_id).to.equal(c.headers.get('x-request-id'));
  });

  it('sets security headers', async () => {
    const r = await d.api.get('/health/live');
    expect(r.headers.get('x-content-type-options')).to.equal('nosniff');
    expect(r.headers.get('x-frame-options')).to.equal('DENY');
    expect(r.headers.get('content-security-policy')).to.include("default-src 'none'");
    expect(r.headers.get('cache-control')).to.equal('no-store');
    expect(r.headers.get('x-powered-by')).to.equal(null);
  });

  it('answers an unknown route with 404 in the envelope', async () => {
    const r = await d.api.get('/v1/does-not-exist');
    expect(r.status).to.equal(404);
    expectEnvelope(r.body, 'NOT_FOUND', 'NOT_FOUND');
  });

  it('answers a wrong method with 405 and Allow', async () => {
    const r = await d.api.delete('/health/live');
    expect(r.status).to.equal(405);
    expectEnvelope(r.body, 'NOT_FOUND', 'METHOD_NOT_ALLOWED');
    expect(r.headers.get('allow')).to.include('GET');
  });

  it('refuses malformed JSON', async () => {
    const r = await d.api.request('POST', '/v1/anything', {
      rawBody: '{"a":',
      headers: { 'content-type': 'application/json' },
    });
    expect(r.status).to.equal(400);
    expectEnvelope(r.body, 'VALIDATION_ERROR', 'INVALID_JSON');
  });

  it('refuses non-object JSON (a string, a number, null)', async () => {
    for (const raw of ['"text"', '42', 'null', 'true']) {
      const r = await d.api.request('POST', '/v1/anything', {
        rawBody: raw,
        headers: { 'content-type': 'application/json' },
      });
      expect(r.status, raw).to.equal(400);
      expectEnvelope(r.body, 'VALIDATION_ERROR', 'INVALID_JSON');
    }
  });

  it('refuses a 10 MiB body with 413 in the envelope', async () => {
    const big = JSON.stringify({ vision: 'x'.repeat(10 * 1024 * 1024) });
    const r = await d.api.request('POST', '/v1/anything', {
      rawBody: big,
      headers: { 'content-type': 'application/json' },
    });
    expect(r.status).to.equal(413);
    expectEnvelope(r.body, 'VALIDATION_ERROR', 'PAYLOAD_TOO_LARGE');
  });

  it('refuses bodies that are not JSON with 415', async () => {
    const r = await d.api.request('POST', '/v1/anything', {
      rawBody: 'a=1',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(r.status).to.equal(415);
    expectEnvelope(r.body, 'VALIDATION_ERROR', 'UNSUPPORTED_MEDIA_TYPE');
  });

  it('answers a request with a broken encoding header in the envelope', async () => {
    const raw = await rawRequest(
      d.url,
      'POST /v1/anything HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Encoding: bogus\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}',
    );
    expect(raw).to.match(/^HTTP\/1\.1 415/);
    expect(raw).to.include('UNSUPPORTED_MEDIA_TYPE');
    expect(raw).to.include('"success":false');
  });

  it('exposes Prometheus metrics by route template', async () => {
    await d.api.get('/health/live');
    const r = await d.api.get('/metrics');
    expect(r.status).to.equal(200);
    expect(r.headers.get('content-type')).to.include('text/plain');
    expect(r.text).to.match(/keen_http_requests_total\{method="GET",route="\/health\/live",status="200"\} \d+/);
    expect(r.text).to.include('keen_http_request_duration_seconds_bucket');
    expect(r.text).to.match(/route="unmatched"/);
  });

  it('serves OpenAPI 3.1 built from schemas/', async () => {
    const r = await d.api.get('/openapi.json');
    expect(r.status).to.equal(200);
    expect(r.body.openapi).to.equal('3.1.0');
    expect(r.body.paths['/health/ready'].get.responses['200'].content['application/json'].schema.$ref).to.equal(
      '#/components/schemas/HealthResponse',
    );
    expect(r.body.components.schemas.ErrorEnvelope.properties.error.required).to.include('code');
    expect(r.body.components.securitySchemes).to.have.keys('bearerAuth', 'apiKeyAuth');
  });

  it('never logs the Authorization header or query-string credentials', async () => {
    await d.api.get('/health/live?token=canary-query-secret', {
      headers: { authorization: 'Bearer canary-header-secret' },
    });
    await d.api.get('/nope?ticket=canary-ticket-secret');
    const text = d.logs.join('');
    expect(text).to.include('"path":"/nope"');
    expect(text).not.to.include('canary-');
  });
});
