import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { errorHandler } from '../../daemon/http/middleware/errors.js';
import { createLogger } from '../../daemon/logger.js';
import { Metrics } from '../../daemon/metrics.js';
import { DiskSpaceCheck, isStorageFullError } from '../../daemon/storage/disk.js';

const coded = (code: string, message = 'boom') => Object.assign(new Error(message), { code });

describe('storage full: recognising the error', () => {
  it('knows SQLite, Postgres and system "no space" codes, also as a cause', () => {
    for (const err of [
      coded('SQLITE_FULL', 'database or disk is full'),
      coded('SQLITE_IOERR_SHMSIZE'),
      coded('53100', 'could not extend file "base/16384/16385": No space left on device'),
      coded('ENOSPC'),
      coded('EDQUOT'),
      new Error('wrapped', { cause: coded('SQLITE_FULL') }),
    ]) {
      expect(isStorageFullError(err), err.message).to.equal(true);
    }
    for (const err of [
      coded('SQLITE_BUSY'),
      coded('SQLITE_IOERR_READ'),
      coded('SQLITE_CONSTRAINT_UNIQUE'),
      coded('23505'),
      coded('53300'),
      new Error('x'),
      null,
      'ENOSPC',
    ]) {
      expect(isStorageFullError(err), String(err)).to.equal(false);
    }
  });

  it('the error middleware answers 507 INSUFFICIENT_STORAGE with Retry-After, without the cause in the body', async () => {
    const handler = errorHandler({ logger: createLogger('silent'), metrics: new Metrics({ defaultMetrics: false }) });
    for (const thrown of [
      coded('SQLITE_FULL', 'database or disk is full'),
      coded('53100', 'could not extend file "base/1/2": No space left on device'),
    ]) {
      const headers: Record<string, string> = {};
      const ctx = {
        state: { requestId: 'req_test' },
        method: 'POST',
        path: '/v1/x',
        status: 200,
        body: undefined as unknown,
        response: { get: () => '' },
        set(k: string, v: string) {
          headers[k] = v;
        },
      };
      await handler(ctx as never, async () => {
        throw thrown;
      });
      expect(ctx.status).to.equal(507);
      expect(headers).to.deep.equal({ 'Retry-After': '30' });
      const body = ctx.body as { error: { type: string; code: string; message: string } };
      expect(body.error).to.include({ type: 'SYSTEM_ERROR', code: 'INSUFFICIENT_STORAGE' });
      expect(JSON.stringify(body)).to.not.match(/base\/|No space|disk is full|SQLITE/);
    }
  });
});

describe('storage full: free disk space check', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'keen-disk-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  class Spy {
    readonly warnings: Array<{ obj: any; msg: string }> = [];
    readonly infos: string[] = [];
    warn(obj: object, msg: string) {
      this.warnings.push({ obj, msg });
    }
    info(_obj: object, msg: string) {
      this.infos.push(msg);
    }
  }

  it('measures each path (one not created yet by its nearest parent), fails below the threshold, and logs each crossing once', async () => {
    const paths = [dir, path.join(dir, 'not', 'yet', 'there'), path.join(dir, 'keen.db')];
    const spy = new Spy();
    const measured = await new DiskSpaceCheck(paths, 1, spy as never).measure();
    expect(measured.map((m) => m.path)).to.deep.equal(paths);
    for (const m of measured) expect(m.freeBytes).to.be.above(0);

    // Nothing is that large: always below.
    const low = new DiskSpaceCheck(paths, Number.MAX_SAFE_INTEGER, spy as never);
    for (let i = 0; i < 3; i++) {
      let failed = false;
      await low.check().catch(() => (failed = true));
      expect(failed).to.equal(true);
    }
    expect(spy.warnings).to.have.length(1);
    expect(spy.warnings[0]!.msg).to.include('min_free_disk_mb');
    expect(spy.warnings[0]!.obj.low.map((l: { path: string }) => l.path)).to.deep.equal(paths);

    const fine = new DiskSpaceCheck(paths, 1, spy as never);
    await fine.check();
    expect(spy.infos).to.deep.equal([]);
  });
});
