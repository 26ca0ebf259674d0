import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { PROJECT_ROOT } from '../../../daemon/paths.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';

const run = promisify(execFile);
const REDOCLY = path.join(PROJECT_ROOT, 'node_modules/@redocly/cli/bin/cli.js');

interface LintReport {
  totals: { errors: number; warnings: number };
  problems: Array<{ ruleId: string; severity: string; message: string; location?: Array<{ pointer?: string }> }>;
}

/**
 * The document a real daemon serves at /openapi.json, linted by the Redocly CLI
 * (a child process) with the rules in redocly.yaml: any error fails.
 */
describe('GET /openapi.json passes `redocly lint`', function () {
  this.timeout(60_000);
  let d: TestDaemon;
  let dir: string;

  before(async () => {
    d = await startDaemon({ logLevel: 'warn' });
    dir = mkdtempSync(path.join(tmpdir(), 'keen-openapi-'));
  });
  after(async () => {
    await d?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('has no lint errors (and no warnings) under redocly.yaml', async () => {
    const r = await d.api.get('/openapi.json');
    expect(r.status).to.equal(200);
    const file = path.join(dir, 'openapi.json');
    writeFileSync(file, r.text);
    let stdout: string;
    try {
      ({ stdout } = await run(
        process.execPath,
        [REDOCLY, 'lint', file, '--format=json', '--config', path.join(PROJECT_ROOT, 'redocly.yaml')],
        {
          cwd: dir,
          env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true', NO_COLOR: '1' },
          maxBuffer: 16 * 1024 * 1024,
        },
      ));
    } catch (err) {
      // redocly exits 1 when it finds errors; the JSON report is still on stdout.
      stdout = (err as { stdout?: string }).stdout ?? '';
      if (!stdout.includes('"totals"')) throw err;
    }
    const report = JSON.parse(stdout.slice(stdout.indexOf('{'))) as LintReport;
    const describe = (p: LintReport['problems'][number]) =>
      `${p.severity} ${p.ruleId}: ${p.message} at ${p.location?.[0]?.pointer ?? '?'}`;
    expect(report.problems.filter((p) => p.severity === 'error').map(describe)).to.deep.equal([]);
    expect(report.totals.errors).to.equal(0);
    // Warnings are not fatal for the CLI, but the document is clean today: keep it so.
    expect(report.problems.map(describe)).to.deep.equal([]);
  });
});
