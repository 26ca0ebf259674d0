import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseExpiry, parseScopes } from '../../../cli/core/context.js';
import { CliError, printError } from '../../../cli/core/output.js';
import {
  checkUrl,
  daemonAddress,
  DEFAULT_URL,
  resolveConnection,
  type ProfileFile,
} from '../../../cli/core/profile.js';

const FILE: ProfileFile = {
  default: 'prod',
  profiles: { prod: { url: 'https://prod.example.com', api_key: 'ak_prod' } },
};
const load = () => FILE;
const none = () => null;

function usageError(fn: () => unknown): CliError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(CliError);
    expect((err as CliError).exitCode).to.equal(2);
    return err as CliError;
  }
  return expect.fail('no error') as never;
}

describe('keen-admin finds the daemon like the daemon finds itself', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'keen-addr-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("daemonAddress: KEEN_PORT, KEEN_HOST, the config file's server.host/port, variables over the file; wildcards are loopback", () => {
    expect(daemonAddress({})).to.equal(undefined);
    expect(daemonAddress({ KEEN_PORT: '18437' })).to.equal('http://127.0.0.1:18437');
    expect(daemonAddress({ KEEN_HOST: '0.0.0.0', KEEN_PORT: '18437' })).to.equal('http://127.0.0.1:18437');
    expect(daemonAddress({ KEEN_HOST: '::', KEEN_PORT: '1' })).to.equal('http://[::1]:1');
    const file = path.join(dir, 'gateway.yaml');
    writeFileSync(file, 'server:\n  host: 127.0.0.2\n  port: 9123\n');
    expect(daemonAddress({ KEEN_CONFIG: file })).to.equal('http://127.0.0.2:9123');
    expect(daemonAddress({}, file)).to.equal('http://127.0.0.2:9123');
    expect(daemonAddress({ KEEN_PORT: '7000' }, file)).to.equal('http://127.0.0.2:7000');
    // A file that does not load: the variables alone still count.
    expect(daemonAddress({ KEEN_CONFIG: path.join(dir, 'missing.yaml') })).to.equal(undefined);
    expect(daemonAddress({ KEEN_CONFIG: path.join(dir, 'missing.yaml'), KEEN_PORT: '7001' })).to.equal(
      'http://127.0.0.1:7001',
    );
  });

  it("order: --url, KEEN_URL, KEEN_PROFILE, then the daemon's address, then the default profile, then the built-in URL", () => {
    const daemon = () => 'http://127.0.0.1:18437';
    expect(resolveConnection({}, {}, none, 'f', daemon)).to.include({
      url: 'http://127.0.0.1:18437',
      urlSource: 'daemon',
    });
    // The daemon's address beats the default profile's URL; the key still comes from the profile.
    expect(resolveConnection({}, {}, load, 'f', daemon)).to.include({
      url: 'http://127.0.0.1:18437',
      urlSource: 'daemon',
      apiKey: 'ak_prod',
    });
    expect(resolveConnection({}, { KEEN_URL: 'http://env:1' }, none, 'f', daemon)).to.include({
      url: 'http://env:1',
      urlSource: 'env',
    });
    expect(resolveConnection({ url: 'http://flag:1' }, {}, none, 'f', daemon)).to.include({
      url: 'http://flag:1',
      urlSource: 'flag',
    });
    expect(resolveConnection({}, { KEEN_PROFILE: 'prod' }, load, 'f', daemon)).to.include({
      url: 'https://prod.example.com',
    });
    expect(resolveConnection({}, {}, none, 'f', () => undefined)).to.include({
      url: DEFAULT_URL,
      urlSource: 'default',
    });
  });

  it('a URL that is not http(s) is a usage error naming where it came from', () => {
    expect(usageError(() => resolveConnection({ url: 'notaurl' }, {}, none)).message).to.include(
      '--url: "notaurl" is not a daemon URL',
    );
    expect(usageError(() => resolveConnection({}, { KEEN_URL: 'ftp://x' }, none)).code).to.equal('INVALID_URL');
    expect(checkUrl('https://keen.example.com', '--url')).to.equal('https://keen.example.com');
  });
});

describe('keen-admin argument errors', () => {
  it('--expires: a bare number and a past date are usage errors that say what to use', () => {
    expect(usageError(() => parseExpiry('90')).message).to.include(
      '"90" is not a lifetime or a date: use 90d, 12h, 30m or a date',
    );
    expect(usageError(() => parseExpiry('2020-01-01')).message).to.include('in the past');
    expect(Date.parse(parseExpiry('90d')) - Date.now()).to.be.closeTo(90 * 86_400_000, 60_000);
    expect(parseExpiry('2999-01-01')).to.equal('2999-01-01T00:00:00.000Z');
  });

  it('--scopes: an unknown scope lists the allowed ones', () => {
    expect(usageError(() => parseScopes('agents:exec')).message)
      .to.include('unknown scope "agents:exec"')
      .and.include('allowed: agents:execute, sessions:read, credits:read, keys:manage, admin');
    expect(parseScopes('agents:execute, sessions:read')).to.deep.equal(['agents:execute', 'sessions:read']);
  });

  it('--json errors carry success: false and the code', () => {
    let written = '';
    const write = process.stderr.write;
    process.stderr.write = ((s: string) => ((written += s), true)) as typeof process.stderr.write;
    try {
      printError(new CliError('no API key', 2, 'NO_API_KEY'), { json: true });
    } finally {
      process.stderr.write = write;
    }
    expect(JSON.parse(written)).to.deep.equal({
      success: false,
      error: { code: 'NO_API_KEY', message: 'no API key', request_id: null },
    });
  });
});
