import { hashRequest } from '../idempotency/key.js';
import type { IdempotencyStore } from '../idempotency/store.js';
import type { Queryable } from '../storage/database.js';
import type { AppContext } from './context.js';
import { enveloped } from './routes.js';

/**
 * What a money write answers (its payload: the edge adds the envelope), and whether the ledger
 * found it done already (its own key).
 */
export interface OnceResult<T extends object> {
  status: number;
  body: T;
  replayed: boolean;
}

/**
 * Answers a money write (grant, adjust, refund, pool grant) at most once per
 * `Idempotency-Key` (docs/API.md, "Idempotency"): with a key, the write and its
 * stored response commit in one transaction and a retry gets the stored
 * response; without one, it just runs. `work` gets the ledger's own key, derived
 * from the caller's (null without one), so a retry after the stored response is
 * gone (a daemon died mid-request, 24 h passed) still lands once.
 * `Idempotent-Replayed: true` says nothing moved this time. Sets the status and
 * returns the payload, which the route returns for the edge to envelope
 * (daemon/http/routes.ts, `defineRoute`); the answer is stored as it goes on the wire.
 */
export async function answerOnce<T extends object>(
  ctx: AppContext,
  idempotency: IdempotencyStore,
  userId: string,
  request: Record<string, unknown>,
  work: (ledgerKey: string | null, trx?: Queryable) => Promise<OnceResult<T>>,
): Promise<T> {
  const key = ctx.get('Idempotency-Key');
  const ledgerKey = key ? `adm_${hashRequest({ admin: userId, key })}` : null;
  let ledgerReplayed = false;
  const run = async (trx?: Queryable) => {
    const r = await work(ledgerKey, trx);
    ledgerReplayed = r.replayed;
    return { status: r.status, body: enveloped(r.body) };
  };
  const result = key
    ? await idempotency.run(userId, key, hashRequest(request), run)
    : { ...(await run()), replayed: false };
  if (result.replayed || ledgerReplayed) ctx.set('Idempotent-Replayed', 'true');
  ctx.status = result.status;
  // The stored answer carries `success: true` first; enveloping it again at the edge leaves it as it is.
  return result.body as T;
}
