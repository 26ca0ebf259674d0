/**
 * The floor `npm run bench` compares the gateway's authenticated read to: a
 * minimal Koa app that verifies an HS256 JWT (jsonwebtoken, KeyObject secret)
 * and reads one row from better-sqlite3, then answers JSON. No router, no
 * rate limit, no metrics, no request id, no logs: what any such endpoint costs.
 *
 * Run as a child process by bench/run.ts: `node --import tsx bench/baseline.ts DBFILE SECRET`
 * prints `listening PORT` on stdout.
 */
import { createSecretKey } from 'node:crypto';
import BetterSqlite3 from 'better-sqlite3';
import jwt from 'jsonwebtoken';
import Koa from 'koa';

/** Makes the baseline's database: `users` rows with a balance, one per id. */
export function seedBaseline(file: string, ids: string[]): void {
  const db = new BetterSqlite3(file);
  db.pragma('journal_mode = WAL');
  db.exec(
    'create table if not exists users (id text primary key, balance integer not null, reserved integer not null)',
  );
  const insert = db.prepare('insert or replace into users (id, balance, reserved) values (?, ?, 0)');
  db.transaction(() => ids.forEach((id, i) => insert.run(id, (i + 1) * 1_000_000)))();
  db.close();
}

/** A token the baseline accepts. */
export function baselineToken(secret: string, userId: string): string {
  return jwt.sign({ scopes: ['credits:read'] }, createSecretKey(Buffer.from(secret)), {
    algorithm: 'HS256',
    subject: userId,
    expiresIn: 900,
  });
}

async function serve(file: string, secret: string): Promise<void> {
  const key = createSecretKey(Buffer.from(secret));
  const db = new BetterSqlite3(file, { readonly: true });
  const find = db.prepare<[string], { balance: number; reserved: number }>(
    'select balance, reserved from users where id = ?',
  );
  const app = new Koa();
  app.use((ctx) => {
    const header = ctx.get('authorization');
    if (!header.startsWith('Bearer ')) {
      ctx.status = 401;
      ctx.body = { success: false };
      return;
    }
    let sub: string;
    try {
      sub = String((jwt.verify(header.slice(7), key, { algorithms: ['HS256'] }) as jwt.JwtPayload).sub);
    } catch {
      ctx.status = 401;
      ctx.body = { success: false };
      return;
    }
    const row = find.get(sub);
    if (!row) {
      ctx.status = 404;
      ctx.body = { success: false };
      return;
    }
    ctx.body = {
      success: true,
      balance: row.balance / 1e6,
      reserved: row.reserved / 1e6,
      available: (row.balance - row.reserved) / 1e6,
    };
  });
  const server = app.listen(0, '127.0.0.1', () => {
    const address = server.address();
    process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : 0}\n`);
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!) && process.argv.length >= 4) {
  await serve(process.argv[2]!, process.argv[3]!);
}
