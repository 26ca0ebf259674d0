import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import * as generator from '../../../scripts/gen-types.js';

/** Every endpoint the SDK wraps, with the schemas its types are generated from. */
const ENDPOINTS: Array<[method: string, path: string, request: string | null, response: string]> = [
  ['post', '/v1/agents/execute', 'ExecuteRequest', 'ExecuteResponse'],
  ['post', '/v1/agents/quote', 'ExecuteRequest', 'QuoteResponse'],
  ['get', '/v1/sessions', null, 'SessionListResponse'],
  ['get', '/v1/sessions/{id}', null, 'SessionResponse'],
  ['post', '/v1/sessions/{id}/cancel', null, 'SessionResponse'],
  ['get', '/v1/sessions/{id}/events', null, 'SessionEventsResponse'],
  ['get', '/v1/credits/balance', null, 'CreditBalanceResponse'],
  ['get', '/v1/credits/transactions', null, 'CreditTransactionListResponse'],
  ['get', '/v1/api-keys', null, 'ApiKeyListResponse'],
  ['post', '/v1/api-keys', 'ApiKeyCreateRequest', 'ApiKeyCreatedResponse'],
  ['delete', '/v1/api-keys/{id}', null, 'ApiKeyResponse'],
  ['get', '/v1/me', null, 'MeResponse'],
  ['post', '/v1/auth/refresh', 'RefreshRequest', 'RefreshResponse'],
  ['get', '/v1/admin/tenants', null, 'TenantListResponse'],
  ['get', '/v1/admin/tenants/{id}/credits', null, 'TenantCreditPoolResponse'],
  ['post', '/v1/admin/tenants/{id}/credits/grant', 'TenantCreditGrantRequest', 'TenantCreditGrantResponse'],
  ['get', '/v1/admin/credits/pools', null, 'CreditPoolListResponse'],
];

describe('SDK types and the daemon cannot drift', () => {
  it('sdk/src/types.gen.ts is what schemas/api generates now (run `npm run gen:types`)', async function () {
    this.timeout(60_000);
    const { SDK_TYPES_FILE, generateSdkTypes } = generator;
    const fresh = await generateSdkTypes();
    expect(
      readFileSync(SDK_TYPES_FILE, 'utf8') === fresh,
      'sdk/src/types.gen.ts is stale: run `npm run gen:types`',
    ).to.equal(true);
  });

  describe('the OpenAPI document the daemon serves', () => {
    let d: TestDaemon;
    before(async () => {
      d = await startDaemon();
    });
    after(async () => d?.stop());

    it('declares the request and response schemas the SDK is generated from, for every endpoint it wraps', async () => {
      const { SDK_SCHEMAS } = generator;
      const spec = (await d.api.get('/openapi.json')).body;
      const ref = (s: { $ref?: string } | undefined) => s?.$ref?.replace('#/components/schemas/', '');
      for (const [method, path, request, response] of ENDPOINTS) {
        const op = spec.paths[path]?.[method];
        expect(op, `${method.toUpperCase()} ${path} is not in the daemon's API`).to.be.an('object');
        const ok = Object.entries(
          op.responses as Record<string, { content?: Record<string, { schema?: { $ref?: string } }> }>,
        ).find(([status]) => status.startsWith('2'));
        expect(ref(ok?.[1].content?.['application/json']?.schema), `${method} ${path} response`).to.equal(response);
        if (request)
          expect(ref(op.requestBody?.content?.['application/json']?.schema), `${method} ${path} body`).to.equal(
            request,
          );
        for (const name of [request, response]) if (name) expect(SDK_SCHEMAS, name).to.include(name);
      }
    });
  });
});
