import { expect } from 'chai';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../../daemon/config/load.js';
import { createLogger } from '../../../daemon/logger.js';
import { databaseFromConfig, type Database } from '../../../daemon/storage/database.js';

const silent = createLogger('silent');

/** The options pg's pool was given (no connection is opened until a query runs). */
function poolOptions(database: Database): Record<string, unknown> {
  return (database as unknown as { pool: { options: Record<string, unknown> } }).pool.options;
}

describe('databaseFromConfig', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'keen-dbcfg-'));
  const file = path.join(dir, 'gateway.yaml');
  writeFileSync(
    file,
    [
      'database:',
      '  url: postgres://keen@127.0.0.1:1/keen',
      '  pool_max: 7',
      '  connect_timeout_ms: 1234',
      '  statement_timeout_ms: 2345',
      '  query_timeout_ms: 3456',
      '  keepalive_idle_ms: 4567',
      '  idle_in_transaction_timeout_ms: 5678',
      '',
    ].join('\n'),
  );
  const config = loadConfig({ file, env: {}, cwd: dir });

  it('maps every database.* key of the config', async () => {
    const database = databaseFromConfig(config, { logger: silent });
    try {
      expect(database.dialect).to.equal('postgres');
      expect(poolOptions(database)).to.include({
        connectionString: 'postgres://keen@127.0.0.1:1/keen',
        max: 7,
        connectionTimeoutMillis: 1234,
        statement_timeout: 2345,
        query_timeout: 3456,
        keepAlive: true,
        keepAliveInitialDelayMillis: 4567,
        idle_in_transaction_session_timeout: 5678,
      });
    } finally {
      await database.close();
    }
  });

  it('lets the caller override what a tool needs (migrate: no statement or query timeout)', async () => {
    const database = databaseFromConfig(config, {
      logger: silent,
      poolMax: 2,
      statementTimeoutMs: 0,
      queryTimeoutMs: 0,
    });
    try {
      const options = poolOptions(database);
      expect(options).to.include({ max: 2, connectionTimeoutMillis: 1234, idle_in_transaction_session_timeout: 5678 });
      expect(options).to.not.have.property('statement_timeout');
      expect(options).to.not.have.property('query_timeout');
    } finally {
      await database.close();
    }
  });

  it('opens another file than the configured one when asked (restore checks a copy)', async () => {
    const copy = path.join(dir, 'copy.db');
    const database = databaseFromConfig(config, { logger: silent, url: `sqlite:${copy}`, poolMax: 1 });
    try {
      expect(database.dialect).to.equal('sqlite');
      await database.ping();
    } finally {
      await database.close();
    }
  });
});
