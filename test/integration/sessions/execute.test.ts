import { expect } from 'chai';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describeStorage } from '../../helpers/backends.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { auditActions, buildUser } from '../../helpers/factories.js';
import { execute, expectLedgerClean, grant, waitForEnd } from '../../helpers/sessions.js';

describeStorage('agent execution end to end', (backend) => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon({ backend, config: { credits: { reservation_ttl_seconds: 30 } } });
  });
  after(async () => d?.stop());

  it('runs the example agent: the documented execute response (session id, running, streaming_url, estimate, reservation), ordered events, exact charge, a clean ledger', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 50);
    const r = await execute(d, u, 'Build a small todo application', { maxIterations: 3, costBudget: 5 });
    expect(r.status, r.text).to.equal(200);
    expect(r.body.success).to.equal(true);
    const s = r.body.session;
    expect(s.id).to.match(/^ses_[0-9a-z]{26}$/);
    expect(s.session_id).to.equal(s.id);
    expect(s).to.include({ status: 'running', current_phase: 'EXPLORE' });
    expect(s.streaming_url).to.equal(`${d.url.replace('http', 'ws')}/v1/stream?sessions=${s.id}`);
    expect(s.estimated_cost).to.be.a('number').and.greaterThan(0);
    expect(r.body.credit_reserved).to.equal(5);
    expect(r.body.request_id).to.equal(r.headers.get('x-request-id'));
    const during = await d.api.get('/v1/credits/balance', { token: u.token });
    void during;

    const end = await waitForEnd(d, u, s.id);
    expect(end.status).to.equal('completed');
    expect(end.final_cost).to.be.greaterThan(0).and.at.most(5);
    expect(end.usage.input_tokens).to.be.greaterThan(0);
    const ev = await d.api.get(`/v1/sessions/${s.id}/events`, { token: u.token });
    const events = ev.body.events as Array<{ type: string; seq: number; data: Record<string, unknown> }>;
    expect(events.map((e) => e.seq)).to.deep.equal(events.map((_, i) => i + 1));
    expect(events[0]).to.deep.include({ type: 'session.status', data: { status: 'running' } });
    const last = events[events.length - 1]!;
    expect(last.type).to.equal('session.status');
    expect(last.data).to.include({ status: 'completed', final_cost: end.final_cost });
    const types = new Set(events.map((e) => e.type));
    for (const t of ['agent.phase', 'agent.progress', 'agent.log', 'cost.update']) expect(types, t).to.include(t);
    const after = await d.api.get(`/v1/sessions/${s.id}/events?after=${events.length - 2}`, { token: u.token });
    expect(after.body.events.map((e: { seq: number }) => e.seq)).to.deep.equal([events.length - 1, events.length]);

    const balance = await d.container.ledger.balance(u.user.id);
    expect(balance.reserved).to.equal(0);
    expect(balance.balance).to.equal(50_000_000 - Math.round(end.final_cost * 1_000_000));
    await expectLedgerClean(d);
    const workspace = path.join(d.config.workspaces.root, s.id);
    expect(statSync(workspace).mode & 0o777).to.equal(0o700);
    expect(await auditActions(d)).to.include.members(['session.execute:success', 'session.complete:success']);
    const list = await d.api.get('/v1/sessions', { token: u.token });
    expect(list.body.sessions.map((x: { id: string }) => x.id)).to.include(s.id);
  });

  it('gives the agent only the vision, its workspace and the options: nothing about the user, money or secrets', async () => {
    const u = await buildUser(d, { tier: 'enterprise' });
    await grant(d, u, 10);
    const r = await execute(d, u, 'Write everything you were given to a file [dump]', {
      maxIterations: 2,
      enableWebSearch: false,
    });
    expect(r.status, r.text).to.equal(200);
    const end = await waitForEnd(d, u, r.body.session.id);
    expect(end.status).to.equal('completed');
    const workspace = path.join(d.config.workspaces.root, end.id);
    const dump = readFileSync(path.join(workspace, 'dump.json'), 'utf8');
    const parsed = JSON.parse(dump);
    const stdin = JSON.parse(parsed.stdin);
    expect(Object.keys(stdin).sort()).to.deep.equal(['options', 'vision', 'workingDirectory']);
    // Inside the sandbox the workspace has one fixed path: no session id, no host layout.
    expect(end.sandboxed).to.equal(true);
    expect(stdin.workingDirectory).to.equal('/workspace');
    expect(parsed.cwd).to.equal('/workspace');
    expect(stdin.options).to.deep.equal({
      maxIterations: 2,
      maxAgents: 50,
      enableWebSearch: false,
      enableStreaming: true,
      showProgress: true,
    });
    for (const secret of [
      u.user.id,
      u.email,
      u.token,
      d.home.jwtSecret,
      d.home.databaseUrl,
      'enterprise',
      'credit',
      'tier',
      'KEEN_',
      'JWT_SECRET',
      d.config.database.url,
    ]) {
      expect(dump, secret).not.to.include(secret);
    }
    // Node itself adds NODE_V8_COVERAGE to every child while coverage is being collected (c8); nothing else gets in.
    const keys = Object.keys(parsed.env).filter((k) => !(k === 'NODE_V8_COVERAGE' && process.env.NODE_V8_COVERAGE));
    // bwrap sets PWD; the sandbox adds TMPDIR (its private /tmp).
    expect(keys.sort()).to.deep.equal(['HOME', 'LANG', 'PATH', 'PWD', 'TMPDIR']);
    expect(parsed.env).to.include({ HOME: '/workspace', PWD: '/workspace', TMPDIR: '/tmp' });
    // PATH keeps only folders the agent can see.
    for (const dir of parsed.env.PATH.split(':')) expect(dir).to.match(/^\/(usr|bin|sbin)(\/|$)/);
    expect(workspace).not.to.include(u.user.id);
  });

  it('stops an agent that overspends and charges exactly its reservation', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 20);
    const r = await execute(d, u, 'Spend a great deal of tokens [overspend]', { costBudget: 2 });
    expect(r.status, r.text).to.equal(200);
    const end = await waitForEnd(d, u, r.body.session.id);
    expect(end.status).to.equal('budget_exhausted');
    expect(end.final_cost).to.equal(2);
    const b = await d.container.ledger.balance(u.user.id);
    expect(b.balance).to.equal(18_000_000);
    expect(b.reserved).to.equal(0);
    await expectLedgerClean(d);
  });

  it('charges a crashed agent what it used, and a failed one likewise', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 20);
    // Four steps: the agent reports the first step's usage, then crashes in the second.
    const crashed = await waitForEnd(
      d,
      u,
      (await execute(d, u, 'Crash half way through [crash] [iterations:4]', { costBudget: 3, maxIterations: 4 })).body
        .session.id,
    );
    expect(crashed.status).to.equal('failed');
    expect(crashed.final_cost).to.be.greaterThan(0);
    expect(crashed.final_cost).to.equal(crashed.cost_so_far);
    expect(crashed.final_cost).to.be.below(3);
    const failed = await waitForEnd(
      d,
      u,
      (await execute(d, u, 'Report a failure at the end [fail]', { costBudget: 3 })).body.session.id,
    );
    expect(failed.status).to.equal('failed');
    expect(failed.end_reason).to.equal('agent_reported_failure');
    const b = await d.container.ledger.balance(u.user.id);
    expect(b.reserved).to.equal(0);
    expect(b.balance).to.equal(20_000_000 - Math.round((crashed.final_cost + failed.final_cost) * 1_000_000));
    await expectLedgerClean(d);
  });

  it('cancels a running agent: charged what it used, the rest released', async () => {
    const u = await buildUser(d, { tier: 'team' });
    await grant(d, u, 10);
    const r = await execute(d, u, 'Take your time with this [slow:200] [iterations:50]', {
      costBudget: 5,
      maxIterations: 50,
    });
    const id = r.body.session.id;
    // Cancel once the agent has reported usage: the cancelled session must be charged it.
    const until = Date.now() + 15_000;
    while ((await d.api.get(`/v1/sessions/${id}`, { token: u.token })).body.session.cost_so_far === 0) {
      if (Date.now() > until) throw new Error('the agent never reported usage');
      await new Promise((res) => setTimeout(res, 50));
    }
    const c = await d.api.post(`/v1/sessions/${id}/cancel`, {}, { token: u.token });
    expect(c.status, c.text).to.equal(200);
    expect(c.body.session.status).to.equal('cancelled');
    expect(c.body.session.final_cost).to.be.greaterThan(0);
    expect(c.body.session.final_cost).to.equal(c.body.session.cost_so_far);
    expect(c.body.session.final_cost).to.be.below(5);
    expect((await d.api.post(`/v1/sessions/${id}/cancel`, {}, { token: u.token })).body.error.code).to.equal(
      'INVALID_STATE',
    );
    const b = await d.container.ledger.balance(u.user.id);
    expect(b.reserved).to.equal(0);
    expect(b.balance).to.equal(10_000_000 - Math.round(c.body.session.final_cost * 1_000_000));
    await expectLedgerClean(d);
  });

  it("answers another user's session as not found, for every verb", async () => {
    const owner = await buildUser(d, { tier: 'team' });
    const other = await buildUser(d, { tier: 'team' });
    await grant(d, owner, 5);
    const id = (await execute(d, owner, 'A session that belongs to its owner', { costBudget: 1 })).body.session.id;
    for (const [m, p] of [
      ['GET', `/v1/sessions/${id}`],
      ['GET', `/v1/sessions/${id}/events`],
      ['POST', `/v1/sessions/${id}/cancel`],
    ] as const) {
      const r = await d.api.request(m, p, { token: other.token, ...(m === 'POST' ? { body: {} } : {}) });
      expect(r.status, p).to.equal(404);
      expect(r.body.error.code).to.equal('NOT_FOUND');
    }
    expect((await d.api.get('/v1/sessions', { token: other.token })).body.sessions).to.deep.equal([]);
    await waitForEnd(d, owner, id);
  });

  it('quotes without side effects, and explains a refusal', async () => {
    const u = await buildUser(d, { tier: 'individual' });
    await grant(d, u, 1);
    const ok = await d.api.post(
      '/v1/agents/quote',
      { vision: 'Estimate this job please', options: { costBudget: 0.5 } },
      { token: u.token },
    );
    expect(ok.status, ok.text).to.equal(200);
    expect(ok.body).to.deep.include({ reservation: 0.5, admission: { allowed: true, reasons: [] } });
    expect(ok.body.estimated_cost).to.be.a('number');
    const no = await d.api.post(
      '/v1/agents/quote',
      { vision: 'Estimate this job please', options: { costBudget: 2 } },
      { token: u.token },
    );
    expect(no.body.admission.allowed).to.equal(false);
    expect(no.body.admission.reasons).to.deep.equal([{ limit: 'credits', current: 1, max: 2 }]);
    expect((await d.api.get('/v1/sessions', { token: u.token })).body.sessions).to.have.length(0);
    expect((await d.container.ledger.balance(u.user.id)).reserved).to.equal(0);
  });
});
