import type { CreditLedger } from '../../credits/ledger.js';
import type { IdempotencyStore } from '../../idempotency/store.js';
import type { UserAdminService } from '../../users/user-admin.js';
import { defineRoutes } from '../routes.js';

/** Credits: the user's balance and ledger, and the admin grant and verify. */
export function creditRoutes(deps: { ledger: CreditLedger; idempotency: IdempotencyStore; users: UserAdminService }) {
  void deps;
  return defineRoutes([]);
}
