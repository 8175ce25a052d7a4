/**
 * Webhook endpoints, managed by the admin: what they are told of, where, and the record of
 * each delivery. The secret is made here and shown once, at creation.
 */
import { randomBytes } from 'node:crypto';
import { AppError, invalid } from '../errors.js';
import { WEBHOOK_EVENTS, type CreatedWebhook, type Webhook, type WebhookDelivery, type WebhookEventType } from '../protocol/webhooks.js';
import type { StoredDelivery, StoredWebhook, WebhookPatch, WebhookStore } from '../storage/webhooks.js';
import { checkDestination, DestinationRefused } from '../webhooks/destination.js';
import { assertAdmin, type Actor } from './access.js';
import { DEFAULT_PAGE, MAX_PAGE } from './rules.js';

/** Longest description kept. */
const DESCRIPTION_MAX = 500;

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** An endpoint as the API shows it. */
export function toWebhook(w: StoredWebhook): Webhook {
  return {
    id: w.id, url: w.url, events: w.events, description: w.description, enabled: w.enabled,
    disabledReason: w.disabledReason, failingSince: iso(w.failingSince), createdAt: iso(w.createdAt)!,
  };
}

/** A delivery as the API shows it. */
export function toDelivery(d: StoredDelivery): WebhookDelivery {
  return {
    id: String(d.id), type: d.type, status: d.status, attempts: d.attempts, createdAt: iso(d.createdAt)!,
    nextAttemptAt: d.status === 'pending' ? iso(d.nextAttemptAt) : null, lastAttemptAt: iso(d.lastAttemptAt),
    lastStatus: d.lastStatus, lastError: d.lastError,
    history: (d.history ?? []).map((a) => ({ at: iso(a.at)!, httpStatus: a.httpStatus, error: a.error })),
  };
}

function toEvents(value: unknown): WebhookEventType[] {
  if (!Array.isArray(value) || value.length === 0) throw invalid('events', `must list at least one of ${WEBHOOK_EVENTS.join(', ')}`);
  for (const e of value) {
    if (!(WEBHOOK_EVENTS as readonly unknown[]).includes(e)) throw invalid('events', `has "${String(e)}", which is not one of ${WEBHOOK_EVENTS.join(', ')}`);
  }
  return WEBHOOK_EVENTS.filter((e) => value.includes(e));
}

function toDescription(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string' || [...value].length > DESCRIPTION_MAX) throw invalid('description', `must be text of at most ${DESCRIPTION_MAX} characters`);
  return value;
}

/** Creating, changing and inspecting webhook endpoints (admin only). */
export class WebhookService {
  private readonly clock: () => number;

  constructor(private readonly store: WebhookStore, private readonly options: { allowPrivate: boolean; clock?: () => number }) {
    this.clock = options.clock ?? Date.now;
  }

  /** A new endpoint, with its signing secret (shown only now). */
  async create(actor: Actor, body: { url?: unknown; events?: unknown; description?: unknown }): Promise<CreatedWebhook> {
    assertAdmin(actor);
    const url = await this.destination(body.url);
    const stored: StoredWebhook = {
      id: `wh_${randomBytes(12).toString('base64url')}`,
      url,
      events: toEvents(body.events),
      description: toDescription(body.description),
      secret: `whsec_${randomBytes(32).toString('base64')}`,
      enabled: true,
      disabledReason: null,
      failingSince: null,
      createdAt: this.clock(),
    };
    await this.store.createWebhook(stored);
    return { ...toWebhook(stored), secret: stored.secret };
  }

  /** Every endpoint. */
  async list(actor: Actor): Promise<Webhook[]> {
    assertAdmin(actor);
    return (await this.store.listWebhooks()).map(toWebhook);
  }

  /** One endpoint. */
  async get(actor: Actor, id: string): Promise<Webhook> {
    assertAdmin(actor);
    return toWebhook(await this.found(id));
  }

  /** Changes an endpoint; `enabled: true` turns a disabled one back on, its failure record cleared. */
  async update(actor: Actor, id: string, body: { url?: unknown; events?: unknown; description?: unknown; enabled?: unknown }): Promise<Webhook> {
    assertAdmin(actor);
    const patch: WebhookPatch = {};
    if (body.url !== undefined) patch.url = await this.destination(body.url);
    if (body.events !== undefined) patch.events = toEvents(body.events);
    if (body.description !== undefined) patch.description = toDescription(body.description);
    if (body.enabled !== undefined) {
      if (typeof body.enabled !== 'boolean') throw invalid('enabled', 'must be true or false');
      patch.enabled = body.enabled;
      patch.disabledReason = body.enabled ? null : 'disabled by the admin';
      if (body.enabled) patch.failingSince = null;
    }
    const updated = await this.store.updateWebhook(id, patch);
    if (!updated) throw new AppError('not_found', `no webhook "${id}"`);
    return toWebhook(updated);
  }

  /** Removes an endpoint and its deliveries. */
  async remove(actor: Actor, id: string): Promise<void> {
    assertAdmin(actor);
    if (!(await this.store.deleteWebhook(id))) throw new AppError('not_found', `no webhook "${id}"`);
  }

  /** An endpoint's deliveries, newest first, with their latest attempt. */
  async deliveries(actor: Actor, id: string, query: { before?: string; limit?: number }): Promise<{ deliveries: WebhookDelivery[]; next: string | null }> {
    assertAdmin(actor);
    await this.found(id);
    const limit = Math.min(query.limit ?? DEFAULT_PAGE, MAX_PAGE);
    const page = await this.store.listDeliveries(id, { limit, ...(query.before === undefined ? {} : { before: Number(query.before) }) });
    const last = page.deliveries[page.deliveries.length - 1];
    return { deliveries: page.deliveries.map(toDelivery), next: page.more && last ? String(last.id) : null };
  }

  /** Sends a delivery again, now, whatever became of it. */
  async retry(actor: Actor, id: string, deliveryId: string): Promise<WebhookDelivery> {
    assertAdmin(actor);
    await this.found(id);
    const d = await this.store.retryDelivery(id, Number(deliveryId), this.clock());
    if (!d) throw new AppError('not_found', `webhook "${id}" has no delivery "${deliveryId}"`);
    return toDelivery(d);
  }

  private async found(id: string): Promise<StoredWebhook> {
    const w = await this.store.getWebhook(id);
    if (!w) throw new AppError('not_found', `no webhook "${id}"`);
    return w;
  }

  private async destination(value: unknown): Promise<string> {
    if (typeof value !== 'string' || value.length > 2048) throw invalid('url', 'must be an http(s) URL of at most 2048 characters');
    try {
      return (await checkDestination(value, this.options.allowPrivate)).href;
    } catch (err) {
      if (err instanceof DestinationRefused) throw invalid('url', err.message);
      throw err;
    }
  }
}
