/**
 * Registered webhook endpoints (docs/webhooks.md): create, read, change, delete,
 * rotate the signing secret, and the delivery log (list, resend, ping). A
 * member acts on its own endpoints; an administrator (admin scope) on those in
 * its reach. An endpoint out of reach is NOT_FOUND, never FORBIDDEN.
 */
import { randomBytes } from 'node:crypto';
import { actorOf, auditContext } from '../audit/actor.js';
import type { AuditLogger } from '../audit/types.js';
import type { ClientInfo } from '../auth/auth-service.js';
import type { Principal } from '../auth/principal.js';
import type { SecretBox } from '../auth/secret-box.js';
import type { Clock } from '../clock.js';
import { parseCredits } from '../credits/money.js';
import { GatewayError, invalidField, notFound } from '../errors.js';
import { isId, newId } from '../ids.js';
import { effectiveRole, reachFor, type Reach } from '../policies/index.js';
import type { Database, Queryable } from '../storage/database.js';
import type { AttemptRow, DeliveryRow, WebhookOutbox } from '../storage/repos/webhook-deliveries.js';
import type { EndpointRow, WebhookEndpointRepository } from '../storage/repos/webhook-endpoints.js';
import { WEBHOOK_EVENT_TYPES, type WebhookEventType } from './events.js';
import type { WebhookService } from './service.js';
import { validateWebhookUrl } from './url.js';

export interface EndpointInput {
  url?: unknown;
  event_types?: unknown;
  description?: unknown;
  enabled?: unknown;
  low_balance_threshold?: unknown;
}

export const DEFAULT_SECRET_GRACE_SECONDS = 86_400;
export const MAX_SECRET_GRACE_SECONDS = 7 * 86_400;
const MAX_ENDPOINTS_PER_USER = 50;

/** An endpoint as read or written at `at`: whether its previous secret still signs depends on it. */
export interface EndpointView {
  row: EndpointRow;
  at: number;
}

/** An endpoint whose signing secret was made just now (create, rotate): the secret, in this answer only. */
export interface EndpointWithSecret extends EndpointView {
  secret: string;
}

/** Endpoints by id; `nextCursor` continues the page. */
export interface EndpointPage {
  endpoints: EndpointView[];
  nextCursor: string | null;
}

/** A delivery with every attempt made of it. */
export interface DeliveryView {
  row: DeliveryRow;
  attempts: AttemptRow[];
}

/** Deliveries, newest first; `nextCursor` continues the page. */
export interface DeliveryPage {
  deliveries: DeliveryView[];
  nextCursor: string | null;
}

export class WebhookEndpoints {
  constructor(
    private readonly deps: {
      /** Opens the transaction of each change (with its audit entry). */
      database: Database;
      endpoints: WebhookEndpointRepository;
      outbox: WebhookOutbox;
      clock: Clock;
      audit: AuditLogger;
      secretBox: SecretBox;
      webhooks: WebhookService;
      allowPrivateTargets: boolean;
    },
  ) {}

  async create(p: Principal, input: EndpointInput, client?: ClientInfo): Promise<EndpointWithSecret> {
    const url = this.url(input.url);
    const eventTypes = eventTypesOf(input.event_types);
    const now = this.deps.clock.now();
    const secret = newSecret();
    const row: EndpointRow = {
      id: newId('wep', now),
      user_id: p.userId,
      tenant_id: p.tenantId,
      url,
      description: descriptionOf(input.description),
      event_types: JSON.stringify(eventTypes),
      enabled: input.enabled === false ? 0 : 1,
      disabled_reason: null,
      disabled_at: input.enabled === false ? now : null,
      failing_since: null,
      low_balance_threshold: thresholdOf(input.low_balance_threshold),
      secret_enc: this.deps.secretBox.seal(secret),
      previous_secret_enc: null,
      previous_secret_expires_at: null,
      created_at: now,
      updated_at: now,
    };
    await this.deps.database.transaction(async (trx) => {
      const count = await this.deps.endpoints.countOfUser(trx, p.userId);
      if (count >= MAX_ENDPOINTS_PER_USER) {
        throw new GatewayError(
          'INVALID_STATE',
          `at most ${MAX_ENDPOINTS_PER_USER} webhook endpoints per user; delete one first`,
        );
      }
      await this.deps.endpoints.insert(trx, row);
      await this.audit(trx, p, 'webhook.endpoint_create', row, client, {
        url_host: hostOf(url),
        event_types: eventTypes,
      });
    });
    return { row, at: now, secret };
  }

  /** Endpoints in `reach`, by id, cursor-paginated. */
  async list(reach: Reach, options: { limit: number; cursor?: string | null }): Promise<EndpointPage> {
    const rows = await this.deps.endpoints.list(reach, { limit: options.limit + 1, cursor: options.cursor ?? null });
    const page = rows.slice(0, options.limit);
    const now = this.deps.clock.now();
    return {
      endpoints: page.map((row) => ({ row, at: now })),
      nextCursor: rows.length > options.limit ? page[page.length - 1]!.id : null,
    };
  }

  async get(p: Principal, id: string): Promise<EndpointView> {
    return { row: await this.find(p, id), at: this.deps.clock.now() };
  }

  async update(p: Principal, id: string, input: EndpointInput, client?: ClientInfo): Promise<EndpointView> {
    const row = await this.find(p, id);
    const now = this.deps.clock.now();
    const patch: Partial<EndpointRow> = {};
    if (input.url !== undefined) patch.url = this.url(input.url);
    if (input.event_types !== undefined) patch.event_types = JSON.stringify(eventTypesOf(input.event_types));
    if (input.description !== undefined) patch.description = descriptionOf(input.description);
    if (input.low_balance_threshold !== undefined)
      patch.low_balance_threshold = thresholdOf(input.low_balance_threshold);
    if (input.enabled !== undefined) {
      if (typeof input.enabled !== 'boolean')
        throw invalidField('enabled must be true or false', [{ field: 'enabled', message: 'must be a boolean' }]);
      patch.enabled = input.enabled ? 1 : 0;
      // Enabled again: whatever made it fail is taken as fixed; disabled by its owner: no reason of ours.
      patch.disabled_reason = null;
      patch.disabled_at = input.enabled ? null : now;
      patch.failing_since = null;
    }
    const fields = Object.keys(patch);
    if (fields.length === 0)
      throw invalidField('nothing to change', [{ field: '', message: 'must have at least one field' }]);
    patch.updated_at = now;
    await this.deps.database.transaction(async (trx) => {
      await this.deps.endpoints.update(trx, row.id, patch);
      await this.audit(trx, p, 'webhook.endpoint_update', row, client, {
        fields,
        ...(patch.url ? { url_host: hostOf(patch.url) } : {}),
      });
    });
    return { row: { ...row, ...patch }, at: now };
  }

  /** Deletes an endpoint; its deliveries not yet sent are dropped (failed, "endpoint deleted"). */
  async remove(p: Principal, id: string, client?: ClientInfo): Promise<void> {
    const row = await this.find(p, id);
    const now = this.deps.clock.now();
    await this.deps.database.transaction(async (trx) => {
      await this.deps.endpoints.delete(trx, row.id);
      await this.deps.outbox.failPendingOf(trx, row.id, now);
      await this.audit(trx, p, 'webhook.endpoint_delete', row, client, { url_host: hostOf(row.url) });
    });
  }

  /**
   * A new signing secret, in this answer only. The old one keeps signing too (a
   * second signature on every delivery) for `graceSeconds` (default 24 h, 0: not
   * at all), so receivers can switch without missing a message. Only the secret
   * just replaced is kept.
   */
  async rotateSecret(
    p: Principal,
    id: string,
    graceSeconds: unknown,
    client?: ClientInfo,
  ): Promise<EndpointWithSecret> {
    const grace = graceSeconds === undefined ? DEFAULT_SECRET_GRACE_SECONDS : graceSeconds;
    if (typeof grace !== 'number' || !Number.isInteger(grace) || grace < 0 || grace > MAX_SECRET_GRACE_SECONDS) {
      throw invalidField(`grace_seconds must be an integer from 0 to ${MAX_SECRET_GRACE_SECONDS}`, [
        { field: 'grace_seconds', message: `from 0 to ${MAX_SECRET_GRACE_SECONDS}` },
      ]);
    }
    const row = await this.find(p, id);
    const now = this.deps.clock.now();
    const secret = newSecret();
    const patch = {
      secret_enc: this.deps.secretBox.seal(secret),
      previous_secret_enc: grace > 0 ? row.secret_enc : null,
      previous_secret_expires_at: grace > 0 ? now + grace * 1000 : null,
      updated_at: now,
    };
    await this.deps.database.transaction(async (trx) => {
      // Compare-and-set on the secret: of two racing rotations one wins, the other is refused.
      const replaced = await this.deps.endpoints.replaceSecret(trx, row.id, row.secret_enc, patch);
      if (!replaced) {
        throw new GatewayError('INVALID_STATE', 'the secret was rotated meanwhile; read the endpoint and try again');
      }
      await this.audit(trx, p, 'webhook.secret_rotate', row, client, { grace_seconds: grace });
    });
    return { row: { ...row, ...patch }, at: now, secret };
  }

  /** One page of an endpoint's deliveries, newest first, each with its attempts. */
  async deliveries(
    p: Principal,
    id: string,
    options: { limit: number; cursor?: string | null; status?: string },
  ): Promise<DeliveryPage> {
    const ep = await this.find(p, id);
    const rows = await this.deps.outbox.listForEndpoint(ep.id, {
      limit: options.limit + 1,
      cursor: options.cursor ?? null,
      ...(options.status ? { status: options.status as DeliveryRow['status'] } : {}),
    });
    const page = rows.slice(0, options.limit);
    const attempts = await this.attemptsOf(page.map((r) => r.id));
    return {
      deliveries: page.map((row) => ({ row, attempts: attempts.get(row.id) ?? [] })),
      nextCursor: rows.length > options.limit ? page[page.length - 1]!.id : null,
    };
  }

  async delivery(p: Principal, id: string, deliveryId: string): Promise<DeliveryView> {
    const row = await this.findDelivery(p, id, deliveryId);
    return { row, attempts: (await this.attemptsOf([row.id])).get(row.id) ?? [] };
  }

  /**
   * Sends a delivery again: same id (so the same `webhook-id`), same payload,
   * now, with one more attempt allowed. Refused while it is still pending or
   * being delivered, and when its endpoint is disabled.
   */
  async resend(p: Principal, id: string, deliveryId: string, client?: ClientInfo): Promise<DeliveryView> {
    const ep = await this.find(p, id);
    if (ep.enabled !== 1) throw new GatewayError('INVALID_STATE', 'the endpoint is disabled; enable it first');
    const row = await this.findDelivery(p, id, deliveryId);
    const now = this.deps.clock.now();
    await this.deps.database.transaction(async (trx) => {
      const queued = await this.deps.outbox.resend(trx, row.id, now);
      if (!queued) throw new GatewayError('INVALID_STATE', `the delivery is ${row.status}: it is being sent already`);
      await this.audit(trx, p, 'webhook.resend', ep, client, { delivery_id: row.id, event_type: row.event_type });
    });
    return this.delivery(p, id, deliveryId);
  }

  /** Queues a `ping` message to the endpoint (whatever event types it wants). */
  async ping(p: Principal, id: string): Promise<DeliveryView> {
    const ep = await this.find(p, id);
    if (ep.enabled !== 1) throw new GatewayError('INVALID_STATE', 'the endpoint is disabled; enable it first');
    const { id: deliveryId } = await this.deps.webhooks.enqueue({
      userId: ep.user_id,
      tenantId: ep.tenant_id,
      sessionId: null,
      url: ep.url,
      eventType: 'ping',
      data: { endpoint_id: ep.id, message: 'ping from keen-gateway' },
      endpointId: ep.id,
    });
    return this.delivery(p, id, deliveryId);
  }

  /** An endpoint in the caller's reach: its own, or for an administrator any in its reach. */
  private async find(p: Principal, id: string): Promise<EndpointRow> {
    const reach = endpointReach(p);
    if (!isId(id, 'wep')) throw notFound('webhook endpoint');
    const row = await this.deps.endpoints.find(id, reach);
    if (!row) throw notFound('webhook endpoint');
    return row;
  }

  private async findDelivery(p: Principal, id: string, deliveryId: string): Promise<DeliveryRow> {
    const ep = await this.find(p, id);
    const row = isId(deliveryId, 'whk') ? await this.deps.outbox.findForEndpoint(deliveryId, ep.id) : undefined;
    if (!row) throw notFound('delivery');
    return row;
  }

  private async attemptsOf(deliveryIds: string[]): Promise<Map<string, AttemptRow[]>> {
    const out = new Map<string, AttemptRow[]>();
    if (deliveryIds.length === 0) return out;
    const rows = await this.deps.outbox.attemptsOf(deliveryIds);
    for (const r of rows) {
      const list = out.get(r.delivery_id) ?? [];
      list.push(r);
      out.set(r.delivery_id, list);
    }
    return out;
  }

  private url(value: unknown): string {
    if (typeof value !== 'string')
      throw invalidField('url must be a string', [{ field: 'url', message: 'must be a string' }]);
    try {
      return validateWebhookUrl(value, { allowPrivateTargets: this.deps.allowPrivateTargets }).toString();
    } catch (err) {
      if (err instanceof GatewayError)
        throw invalidField(err.message.replace(/^webhook_url/, 'url'), [
          { field: 'url', message: err.message.replace(/^webhook_url:? ?/, '') },
        ]);
      throw err;
    }
  }

  private async audit(
    trx: Queryable,
    p: Principal,
    action:
      | 'webhook.endpoint_create'
      | 'webhook.endpoint_update'
      | 'webhook.endpoint_delete'
      | 'webhook.secret_rotate'
      | 'webhook.resend',
    ep: EndpointRow,
    client: ClientInfo | undefined,
    details: Record<string, unknown>,
  ): Promise<void> {
    await this.deps.audit.record(
      {
        action,
        outcome: 'success',
        actor: actorOf(p, { asAdmin: p.userId !== ep.user_id }),
        tenantId: ep.tenant_id,
        target: { type: 'webhook_endpoint', id: ep.id },
        ...auditContext(client),
        details: { owner_id: ep.user_id, ...details },
      },
      trx,
    );
  }
}

/** Members: their own endpoints. Administrators (admin scope): every endpoint in their reach. */
export function endpointReach(p: Principal): Reach {
  return effectiveRole(p) === 'member' ? reachFor(p, 'self') : reachFor(p, 'admin');
}

function newSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

function eventTypesOf(value: unknown): string[] {
  const all = WEBHOOK_EVENT_TYPES as readonly string[];
  if (
    !Array.isArray(value) ||
    value.length === 0 ||
    value.some((t) => typeof t !== 'string' || (t !== '*' && !all.includes(t)))
  ) {
    throw invalidField(`event_types must list event types (${all.join(', ')}) or be ["*"]`, [
      { field: 'event_types', message: 'unknown event type' },
    ]);
  }
  const types = [...new Set(value as string[])];
  return types.includes('*') ? ['*'] : (types as WebhookEventType[]);
}

function descriptionOf(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string' || value.length > 500)
    throw invalidField('description must be a string of at most 500 characters', [
      { field: 'description', message: 'at most 500 characters' },
    ]);
  return value.trim() === '' ? null : value;
}

function thresholdOf(value: unknown): number | null {
  if (value === undefined || value === null) return null;
  return parseCredits(value, 'low_balance_threshold', { allowZero: true });
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '';
  }
}
