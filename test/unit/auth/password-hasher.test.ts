import { expect } from 'chai';
import { PasswordHasher } from '../../../daemon/auth/passwords.js';
import type { GatewayError } from '../../../daemon/errors.js';

const PASSWORD = 'a-password-of-enough-length';

/** Outcome of a hash: 'ok', or the error code with its Retry-After. */
async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    const e = err as GatewayError;
    return `${e.code}:${e.headers['Retry-After']}`;
  }
}

describe('PasswordHasher: argon2 slots shared fairly', () => {
  it('one client holds at most maxPerClient hashes, running or waiting; others still get in', async () => {
    const hasher = new PasswordHasher({ maxConcurrent: 2, maxQueue: 32, maxPerClient: 4 });
    const flood = Array.from({ length: 30 }, () =>
      outcome(hasher.hash(PASSWORD, { clients: ['user:a', 'ip:10.0.0.1'] })),
    );
    expect(hasher.pending).to.equal(4);
    // The same address under another user is the same client.
    const sameIp = outcome(hasher.hash(PASSWORD, { clients: ['user:b', 'ip:10.0.0.1'] }));
    const others = Array.from({ length: 6 }, (_, i) =>
      outcome(hasher.hash(PASSWORD, { clients: [`ip:10.0.1.${i}`], signIn: true })),
    );
    const results = await Promise.all(flood);
    expect(results.filter((r) => r === 'ok').length).to.equal(4);
    expect(results.filter((r) => r === 'UNAVAILABLE:1').length).to.equal(26);
    expect(await sameIp).to.equal('UNAVAILABLE:1');
    expect(await Promise.all(others)).to.deep.equal(Array(6).fill('ok'));
    expect(hasher.pending).to.equal(0);
    // The slots are given back: the client may hash again.
    expect(await outcome(hasher.hash(PASSWORD, { clients: ['user:a'] }))).to.equal('ok');
  });

  it('work other than sign-in cannot take the room kept for sign-ins', async () => {
    // capacity 1 + 7 = 8; half is kept for sign-ins.
    const hasher = new PasswordHasher({ maxConcurrent: 1, maxQueue: 7, maxPerClient: 8 });
    const changes = Array.from({ length: 8 }, (_, i) => outcome(hasher.hash(PASSWORD, { clients: [`user:${i}`] })));
    expect(hasher.pending).to.equal(4);
    const signIns = Array.from({ length: 4 }, (_, i) =>
      outcome(hasher.hash(PASSWORD, { clients: [`ip:10.0.0.${i}`], signIn: true })),
    );
    expect(hasher.pending).to.equal(8);
    const overflow = outcome(hasher.hash(PASSWORD, { clients: ['ip:10.9.9.9'], signIn: true }));
    expect((await Promise.all(changes)).filter((r) => r === 'ok').length).to.equal(4);
    expect(await Promise.all(signIns)).to.deep.equal(Array(4).fill('ok'));
    expect(await overflow).to.equal('UNAVAILABLE:1');
  });

  it('without a claim it behaves as before: a bounded queue, then 503', async () => {
    const hasher = new PasswordHasher({ maxConcurrent: 1, maxQueue: 3, reservedForSignIn: 0 });
    const results = await Promise.all(Array.from({ length: 6 }, () => outcome(hasher.hash(PASSWORD))));
    expect(results.filter((r) => r === 'ok').length).to.equal(4);
    expect(results.filter((r) => r === 'UNAVAILABLE:1').length).to.equal(2);
  });
});
