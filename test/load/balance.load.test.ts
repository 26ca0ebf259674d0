import { expect } from 'chai';
import http from 'node:http';
import { describeStorage } from '../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { buildUser, type TestUser } from '../helpers/factories.js';
import { grant } from '../helpers/sessions.js';

/** A plain GET over node:http (fetch would queue on its own connection pool). */
function get(
  url: string,
  headers: Record<string, string>,
  agent: http.Agent,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

const USERS = 100;
const REQUESTS = 1_000;

/**
 * The load test: 1,000 concurrent authenticated `GET /v1/credits/balance`
 * with the access tokens of 100 users all answer 200 with the right balance,
 * and the limiter counted exactly ten requests per user. No timing assertion
 * (`npm run bench` measures); bounded to a few seconds per backend.
 */
describeStorage('load: 1,000 concurrent GET /v1/credits/balance from 100 users', (backend) => {
  let d: TestDaemon;
  let users: TestUser[];
  let agent: http.Agent;

  before(async function () {
    this.timeout(60_000);
    d = await startDaemon({ backend, logLevel: 'warn' });
    users = [];
    for (let i = 0; i < USERS; i++) {
      const u = await buildUser(d, { tier: 'team' });
      await grant(d, u, i + 1);
      users.push(u);
    }
    // One socket per request: 1,000 requests really in flight at once.
    agent = new http.Agent({ keepAlive: false, maxSockets: REQUESTS });
  });
  after(async () => {
    agent?.destroy();
    await d?.stop();
  });

  it('all 1,000 answer 200 with each user’s own balance; each user is counted exactly 10 times', async function () {
    this.timeout(60_000);
    const results = await Promise.all(
      Array.from({ length: REQUESTS }, async (_, i) => {
        const who = i % USERS;
        const res = await get(`${d.url}/v1/credits/balance`, { authorization: `Bearer ${users[who]!.token}` }, agent);
        const body = JSON.parse(res.text) as { success: boolean; balance: number; available: number };
        return {
          who,
          status: res.status,
          body,
          remaining: Number(res.headers['x-ratelimit-remaining']),
          limit: Number(res.headers['x-ratelimit-limit']),
        };
      }),
    );
    const statuses = new Map<number, number>();
    for (const r of results) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    expect(Object.fromEntries(statuses)).to.deep.equal({ 200: REQUESTS });
    for (const r of results) {
      expect(r.body.success).to.equal(true);
      expect(r.body.balance, `user ${r.who}`).to.equal(r.who + 1);
      expect(r.body.available).to.equal(r.who + 1);
    }
    // Under concurrency the user limiter still counts every request once: the lowest
    // remaining a user saw is its limit minus its ten requests.
    for (let who = 0; who < USERS; who++) {
      const mine = results.filter((r) => r.who === who);
      expect(mine).to.have.length(REQUESTS / USERS);
      expect(Math.min(...mine.map((r) => r.remaining)), `user ${who}`).to.equal(mine[0]!.limit - REQUESTS / USERS);
    }
  });
});
