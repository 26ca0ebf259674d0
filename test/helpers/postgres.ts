import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { TEST_POSTGRES_URL } from './env.js';

/** A fresh, empty Postgres schema for one daemon; `url` points the daemon at it through search_path. */
export interface TestSchema {
  name: string;
  url: string;
  drop(): Promise<void>;
}

export async function createTestSchema(): Promise<TestSchema> {
  if (!TEST_POSTGRES_URL) throw new Error('KEEN_TEST_POSTGRES_URL is not set');
  const name = `keen_t_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
  await client.connect();
  try {
    await client.query(`create schema ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(TEST_POSTGRES_URL);
  url.searchParams.set('options', `-c search_path=${name}`);
  return {
    name,
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: TEST_POSTGRES_URL! });
      await c.connect();
      try {
        await c.query(`drop schema if exists ${name} cascade`);
      } finally {
        await c.end();
      }
    },
  };
}
