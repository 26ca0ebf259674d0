import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { isForbiddenEnvName } from '../../../daemon/agents/process-runner.js';
import { keyId } from '../../../daemon/auth/access-tokens.js';
import { resolvePreviousSecrets } from '../../../daemon/auth/jwt-secret.js';
import { SecretBox } from '../../../daemon/auth/secret-box.js';
import { totpNow } from '../../../daemon/auth/totp.js';
import { ConfigError } from '../../../daemon/config/errors.js';
import { createLogger } from '../../../daemon/logger.js';
import { deriveSigningSecret, verifySignature } from '../../../daemon/webhooks/signing.js';
import { describeStorage } from '../../helpers/backends.js';
import { makeHome, startDaemon, type DaemonHome, type TestDaemon } from '../../helpers/daemon.js';
import { buildUser, type TestUser } from '../../helpers/factories.js';
import { execute, grant, waitForEnd } from '../../helpers/sessions.js';
import { signatureHeaders, webhookReceiver } from '../../helpers/webhooks.js';

const secret = () => randomBytes(40).toString('base64url');
const headerOf = (token: string) =>
  JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()) as { kid?: string };

/**
 * JWT_SECRET rotation without signing anyone out: the new secret signs, the old
 * one (JWT_PREVIOUS_SECRETS) still verifies the tokens it signed (by `kid`) and
 * opens the MFA secrets sealed under it, which the daemon re-seals at start.
 */
describeStorage('JWT_SECRET rotation with kid', (backend) => {
  let home: DaemonHome;
  const daemons: TestDaemon[] = [];
  const oldSecret = secret();
  const newSecret = secret();
  before(async () => {
    home = await makeHome({ backend, jwtSecret: oldSecret });
  });
  after(async () => {
    for (const d of daemons) await d.stop().catch(() => undefined);
    await home?.cleanup();
  });
  async function daemon(
    jwtSecret: string,
    previousJwtSecrets?: string[],
    config: Record<string, unknown> = {},
  ): Promise<TestDaemon> {
    const d = await startDaemon({
      backend,
      databaseUrl: home.databaseUrl,
      jwtSecret,
      ...(previousJwtSecrets ? { previousJwtSecrets } : {}),
      config,
    });
    daemons.push(d);
    return d;
  }

  it('keeps old tokens and MFA working through the overlap, then refuses the old key once it is dropped', async function () {
    this.timeout(60_000);
    // Before: one secret. A user with MFA, and an access token signed with the old secret.
    const before = await daemon(oldSecret);
    const u: TestUser = await buildUser(before, { withPassword: true });
    const setup = await before.api.post('/v1/auth/mfa/setup', {}, { token: u.token });
    const totpSecret = setup.body.secret as string;
    expect(
      (await before.api.post('/v1/auth/mfa/enable', { token: totpNow(totpSecret, Date.now()) }, { token: u.token }))
        .status,
    ).to.equal(200);
    const oldToken = u.token;
    expect(headerOf(oldToken).kid).to.equal(keyId(Buffer.from(oldSecret)));
    const sealedBefore = (
      await before.container.database.db
        .selectFrom('users')
        .select('mfa_secret_enc')
        .where('id', '=', u.user.id)
        .executeTakeFirstOrThrow()
    ).mfa_secret_enc!;
    await before.stop();

    // Overlap: the new secret signs, the old one is still accepted.
    const overlap = await daemon(newSecret, [oldSecret]);
    expect((await overlap.api.get('/v1/me', { token: oldToken })).status).to.equal(200);
    // The MFA secret was re-sealed under the new secret at start, and still works.
    const sealedAfter = (
      await overlap.container.database.db
        .selectFrom('users')
        .select('mfa_secret_enc')
        .where('id', '=', u.user.id)
        .executeTakeFirstOrThrow()
    ).mfa_secret_enc!;
    expect(sealedAfter).to.not.equal(sealedBefore);
    expect(new SecretBox(Buffer.from(newSecret), 'totp-secrets').open(sealedAfter)).to.equal(totpSecret);
    expect(() => new SecretBox(Buffer.from(oldSecret), 'totp-secrets').open(sealedAfter)).to.throw();
    // (The code of the next time step: the enrolment used this one, and a code is accepted once.)
    const login = await overlap.api.post('/v1/auth/login', {
      email: u.email,
      password: u.password,
      mfa_token: totpNow(totpSecret, Date.now() + 30_000),
    });
    expect(login.status, login.text).to.equal(200);
    const newToken = login.body.tokens.access_token as string;
    expect(headerOf(newToken).kid).to.equal(keyId(Buffer.from(newSecret)));
    expect(headerOf(newToken).kid).to.not.equal(headerOf(oldToken).kid);
    await overlap.stop();

    // After: the old secret is gone. Its tokens are refused, new ones and MFA keep working.
    const after = await daemon(newSecret);
    expect((await after.api.get('/v1/me', { token: oldToken })).body.error.code).to.equal('INVALID_TOKEN');
    expect((await after.api.get('/v1/me', { token: newToken })).status).to.equal(200);
    // Time passing, as far as the replay guard is concerned: the last accepted step is forgotten.
    await after.container.database.db
      .updateTable('users')
      .set({ mfa_last_step: null })
      .where('id', '=', u.user.id)
      .execute();
    const again = await after.api.post('/v1/auth/login', {
      email: u.email,
      password: u.password,
      mfa_token: totpNow(totpSecret, Date.now()),
    });
    expect(again.status, again.text).to.equal(200);
  });

  it('refuses a token whose kid is unknown, or names one key but is signed with another', async () => {
    const d = await daemon(newSecret, [oldSecret]);
    const u = await buildUser(d);
    const claims = jwt.decode(u.token) as Record<string, unknown>;
    const sign = (key: string, kid: string | undefined) =>
      jwt.sign(claims, key, {
        algorithm: 'HS256',
        header: { alg: 'HS256', typ: 'at+jwt', ...(kid === undefined ? {} : { kid }) } as jwt.JwtHeader,
      });
    const oldKid = keyId(Buffer.from(oldSecret));
    const newKid = keyId(Buffer.from(newSecret));
    expect((await d.api.get('/v1/me', { token: sign(oldSecret, oldKid) })).status).to.equal(200);
    expect((await d.api.get('/v1/me', { token: sign(newSecret, undefined) })).status).to.equal(200); // signed before key ids
    for (const forged of [
      sign(oldSecret, newKid),
      sign(newSecret, oldKid),
      sign(oldSecret, undefined),
      sign(newSecret, 'unknown-kid'),
      sign(secret(), newKid),
    ]) {
      const r = await d.api.get('/v1/me', { token: forged });
      expect(r.status).to.equal(401);
      expect(r.body.error.code).to.equal('INVALID_TOKEN');
    }
  });

  it('signs webhooks with the current and the previous secret during the overlap', async function () {
    this.timeout(30_000);
    const hook = await webhookReceiver();
    try {
      const d = await daemon(newSecret, [oldSecret], { webhooks: { allow_private_targets: true } });
      const u = await buildUser(d, { tier: 'team' });
      await grant(d, u, 5);
      const r = await execute(d, u, 'Tell me when you are done', { costBudget: 1 }, { webhook_url: hook.url });
      expect(r.status, r.text).to.equal(200);
      await waitForEnd(d, u, r.body.session.id);
      await d.container.webhooks.deliverDueNow();
      expect(hook.received).to.have.length(1);
      const got = hook.received[0]!;
      const headers = signatureHeaders(got);
      expect(headers['webhook-signature'].split(' ')).to.have.length(2);
      const current = (await d.api.get('/v1/webhooks/secret', { token: u.token })).body.secret as string;
      expect(current).to.equal(deriveSigningSecret(Buffer.from(newSecret), u.user.id));
      expect(verifySignature(current, headers, got.body)).to.equal(true);
      expect(verifySignature(deriveSigningSecret(Buffer.from(oldSecret), u.user.id), headers, got.body)).to.equal(true);
      expect(verifySignature(deriveSigningSecret(Buffer.from(secret()), u.user.id), headers, got.body)).to.equal(false);
    } finally {
      await hook.close();
    }
  });

  it('refuses a short previous secret in production, drops a repeat of the current one, and never passes it to agents', () => {
    const logger = createLogger('silent');
    const current = Buffer.from(newSecret);
    expect(() => resolvePreviousSecrets({ provided: ['short'], current, env: 'production', logger })).to.throw(
      ConfigError,
      /JWT_PREVIOUS_SECRETS entry 1: must be at least 32 bytes in production \(got 5\)/,
    );
    expect(
      resolvePreviousSecrets({ provided: [newSecret, oldSecret, oldSecret], current, env: 'production', logger }).map(
        String,
      ),
    ).to.deep.equal([oldSecret]);
    expect(isForbiddenEnvName('JWT_PREVIOUS_SECRETS')).to.equal(true);
  });
});
