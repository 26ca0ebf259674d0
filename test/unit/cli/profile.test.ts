import { expect } from 'chai';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CliError } from '../../../cli/core/output.js';
import {
  DEFAULT_URL,
  profilePath,
  readProfiles,
  resolveConnection,
  shownUrl,
  writeProfiles,
  type ProfileFile,
} from '../../../cli/core/profile.js';

const FILE: ProfileFile = {
  default: 'prod',
  profiles: {
    prod: { url: 'https://prod.example.com', api_key: 'ak_prod' },
    staging: { url: 'https://staging.example.com', api_key: 'ak_staging' },
  },
};
const load = () => FILE;
const none = () => null;

describe('keen-admin connection resolution (flags, env, default profile, built-in)', () => {
  it('uses the built-in URL and no key when nothing is set', () => {
    const c = resolveConnection({}, {}, none);
    expect(c).to.include({ url: DEFAULT_URL, apiKey: undefined, urlSource: 'default', apiKeySource: 'none' });
  });

  it('uses the default profile when neither flags nor environment say anything', () => {
    expect(resolveConnection({}, {}, load)).to.include({
      url: 'https://prod.example.com',
      apiKey: 'ak_prod',
      profile: 'prod',
      urlSource: 'profile',
    });
  });

  it('environment beats the default profile, setting by setting', () => {
    const c = resolveConnection({}, { KEEN_URL: 'http://env:1' }, load);
    expect(c).to.include({ url: 'http://env:1', urlSource: 'env', apiKey: 'ak_prod', apiKeySource: 'profile' });
    const k = resolveConnection({}, { KEEN_API_KEY: 'ak_env' }, load);
    expect(k).to.include({ url: 'https://prod.example.com', apiKey: 'ak_env', apiKeySource: 'env' });
  });

  it('flags beat the environment', () => {
    const c = resolveConnection(
      { url: 'http://flag:1', apiKey: 'ak_flag' },
      { KEEN_URL: 'http://env:1', KEEN_API_KEY: 'ak_env' },
      load,
    );
    expect(c).to.include({ url: 'http://flag:1', apiKey: 'ak_flag', urlSource: 'flag', apiKeySource: 'flag' });
  });

  it('KEEN_PROFILE picks a profile instead of the default; --profile beats KEEN_PROFILE and the environment', () => {
    expect(resolveConnection({}, { KEEN_PROFILE: 'staging' }, load)).to.include({
      url: 'https://staging.example.com',
      apiKey: 'ak_staging',
      profile: 'staging',
    });
    const f = resolveConnection(
      { profile: 'staging' },
      { KEEN_PROFILE: 'prod', KEEN_URL: 'http://env:1', KEEN_API_KEY: 'ak_env' },
      load,
    );
    expect(f).to.include({ url: 'https://staging.example.com', apiKey: 'ak_staging', profile: 'staging' });
    // An explicit --url still beats the profile's URL.
    expect(resolveConnection({ profile: 'staging', url: 'http://flag:1' }, {}, load)).to.include({
      url: 'http://flag:1',
      apiKey: 'ak_staging',
    });
  });

  it('an empty variable counts as unset', () => {
    expect(resolveConnection({}, { KEEN_URL: '', KEEN_API_KEY: '', KEEN_PROFILE: '' }, load)).to.include({
      url: 'https://prod.example.com',
      apiKey: 'ak_prod',
    });
  });

  it('a named profile that does not exist is a usage error (exit 2)', () => {
    for (const [flags, env] of [
      [{ profile: 'nope' }, {}],
      [{}, { KEEN_PROFILE: 'nope' }],
    ] as const) {
      try {
        resolveConnection(flags, env, load, '/x/admin.json');
        expect.fail('resolved');
      } catch (err) {
        expect(err).to.be.instanceOf(CliError);
        expect((err as CliError).exitCode).to.equal(2);
        expect((err as CliError).message)
          .to.include('no profile "nope"')
          .and.include('keen-admin login --profile nope');
      }
    }
    expect(() => resolveConnection({ profile: 'x' }, {}, none)).to.throw(CliError);
  });

  it('does not read the profile file when flags and environment settle everything', () => {
    let reads = 0;
    const c = resolveConnection({}, { KEEN_URL: 'http://env:1', KEEN_API_KEY: 'ak_env' }, () => {
      reads++;
      throw new Error('must not be read');
    });
    expect(c.apiKey).to.equal('ak_env');
    expect(reads).to.equal(0);
  });
});

describe('keen-admin profile file', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'keen-profile-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('lives under XDG_CONFIG_HOME, else ~/.config', () => {
    expect(profilePath({ XDG_CONFIG_HOME: '/xdg', HOME: '/home/a' })).to.equal('/xdg/keen/admin.json');
    expect(profilePath({ HOME: '/home/a' })).to.equal('/home/a/.config/keen/admin.json');
    // A relative XDG_CONFIG_HOME is invalid per the XDG spec and ignored.
    expect(profilePath({ XDG_CONFIG_HOME: 'rel', HOME: '/home/a' })).to.equal('/home/a/.config/keen/admin.json');
  });

  it('is written atomically with mode 0600 in a 0700 directory, and read back', () => {
    const file = path.join(dir, 'keen', 'admin.json');
    writeProfiles(file, FILE);
    expect(statSync(file).mode & 0o777).to.equal(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777).to.equal(0o700);
    expect(readProfiles(file)).to.deep.equal(FILE);
    writeProfiles(file, { default: 'prod', profiles: { prod: FILE.profiles.prod! } });
    expect(readdirSync(path.dirname(file))).to.deep.equal(['admin.json']); // no temporary file left
    expect(JSON.parse(readFileSync(file, 'utf8')).profiles).to.have.keys('prod');
  });

  it('is absent: null', () => {
    expect(readProfiles(path.join(dir, 'none.json'))).to.equal(null);
  });

  it('is refused when group or others may read it, like ssh, naming the fix', () => {
    const file = path.join(dir, 'admin.json');
    writeProfiles(file, FILE);
    chmodSync(file, 0o640);
    expect(() => readProfiles(file)).to.throw(CliError, /permissions 0640 .* are too open.*chmod 600/);
    expect(readProfiles(file, { checkMode: false })).to.deep.equal(FILE);
  });

  it('is refused when it is not a profile file, without echoing its content', () => {
    const file = path.join(dir, 'admin.json');
    writeFileSync(file, '{"profiles": {"a": {"url": "x"}}}', { mode: 0o600 });
    expect(() => readProfiles(file)).to.throw(CliError, /profile "a" needs "url" and "api_key"/);
    writeFileSync(file, 'ak_live_secret not json', { mode: 0o600 });
    try {
      readProfiles(file);
      expect.fail('read');
    } catch (err) {
      expect((err as Error).message)
        .to.include('not valid JSON')
        .and.not.include('ak_live_secret');
    }
  });

  it('shows URLs without their password', () => {
    expect(shownUrl('https://ops:s3cret@keen.example.com')).to.equal('https://ops:***@keen.example.com');
    expect(shownUrl('http://127.0.0.1:8080/')).to.equal('http://127.0.0.1:8080/');
  });
});
