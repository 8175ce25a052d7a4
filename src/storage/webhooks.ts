/**
 * What webhooks need from storage: their endpoints, the delivery outbox, and the lease that
 * lets one instance at a time deliver to an endpoint. Each backend implements
 * {@link WebhookStore} in its dialect; the change → outbox mapping below is shared, so both
 * backends write the same deliveries for the same changes.
 *
 * The outbox rows are written by the backend inside the transaction of the change itself:
 * a change that rolls back leaves no delivery, and one that commits cannot lose its
 * deliveries to a crash.
 */
import type { Message } from '../protocol/types.js';
import type { WebhookEventType } from '../protocol/webhooks.js';
import type { ReadOutcome, SendOutcome } from './storage.js';
import type { StoreWrite } from './writes.js';

/** An endpoint as stored, secret included. */
export interface StoredWebhook {
  id: string;
  url: string;
  events: WebhookEventType[];
  description: string | null;
  secret: string;
  enabled: boolean;
  disabledReason: string | null;
  failingSince: number | null;
  createdAt: number;
}

/** A delivery as stored. */
export interface StoredDelivery {
  id: number;
  webhookId: string;
  type: WebhookEventType;
  payload: string;
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  createdAt: number;
  nextAttemptAt: number;
  lastAttemptAt: number | null;
  lastStatus: number | null;
  lastError: string | null;
  /** Its attempts, oldest first, the last {@link ATTEMPTS_KEPT}: only in a listing. */
  history?: StoredAttempt[];
}

/** One attempt on a delivery. */
export interface StoredAttempt {
  at: number;
  /** The HTTP status that came back, or null if none did. */
  httpStatus: number | null;
  error: string | null;
}

/** How many of a delivery's attempts are kept (the latest): enough to see a pattern, bounded over 24 hours of retries. */
export const ATTEMPTS_KEPT = 20;

/** An attempt row as either dialect reads it. */
export interface AttemptRow {
  delivery_id: number | string; at: number | string; http_status: number | null; error: string | null;
}

/** A webhook row as either dialect reads it (PostgreSQL answers a boolean and bigint text, SQLite integers). */
export interface WebhookRow {
  id: string; url: string; events: string; description: string | null; secret: string; enabled: boolean | number;
  disabled_reason: string | null; failing_since: number | string | null; created_at: number | string;
}

/** A delivery row as either dialect reads it. */
export interface DeliveryRow {
  id: number | string; webhook_id: string; type: string; payload: string; status: string; attempts: number;
  created_at: number | string; next_attempt_at: number | string; last_attempt_at: number | string | null;
  last_status: number | null; last_error: string | null;
}

/** The webhook columns, in the order {@link WebhookRow} and the dialects' INSERTs use. */
export const WEBHOOK_COLUMNS = 'id, url, events, description, secret, enabled, disabled_reason, failing_since, created_at';
/** The delivery columns {@link DeliveryRow} reads. */
export const DELIVERY_COLUMNS = 'id, webhook_id, type, payload, status, attempts, created_at, next_attempt_at, last_attempt_at, last_status, last_error';

const orNull = (v: number | string | null): number | null => (v === null ? null : Number(v));

/** A webhook row of either dialect as the core keeps it. */
export function toWebhook(r: WebhookRow): StoredWebhook {
  return {
    id: r.id, url: r.url, events: r.events.split(' ') as WebhookEventType[], description: r.description, secret: r.secret,
    enabled: r.enabled === true || r.enabled === 1, disabledReason: r.disabled_reason, failingSince: orNull(r.failing_since),
    createdAt: Number(r.created_at),
  };
}

/** A delivery row of either dialect as the core keeps it. */
export function toDelivery(r: DeliveryRow): StoredDelivery {
  return {
    id: Number(r.id), webhookId: r.webhook_id, type: r.type as WebhookEventType, payload: r.payload,
    status: r.status as StoredDelivery['status'], attempts: r.attempts, createdAt: Number(r.created_at),
    nextAttemptAt: Number(r.next_attempt_at), lastAttemptAt: orNull(r.last_attempt_at),
    lastStatus: r.last_status, lastError: r.last_error,
  };
}

/**
 * Gives each delivery its attempts (rows oldest first within a delivery, as the dialects
 * read them).
 */
function withHistory(deliveries: StoredDelivery[], attempts: AttemptRow[]): StoredDelivery[] {
  const byDelivery = new Map<number, StoredAttempt[]>(deliveries.map((d) => [d.id, d.history = []]));
  for (const a of attempts) {
    byDelivery.get(Number(a.delivery_id))?.push({ at: Number(a.at), httpStatus: a.http_status, error: a.error });
  }
  return deliveries;
}

/** A change to an endpoint; absent fields stay as they are. */
export interface WebhookPatch {
  url?: string;
  events?: WebhookEventType[];
  description?: string | null;
  enabled?: boolean;
  disabledReason?: string | null;
  failingSince?: number | null;
}

/** The outcome of one attempt, as the dispatcher records it. */
export interface AttemptRecord {
  at: number;
  status: 'pending' | 'delivered' | 'failed';
  /** When to try again (status pending). */
  nextAttemptAt: number;
  httpStatus: number | null;
  error: string | null;
}

/** The storage side of webhooks. */
export interface WebhookStore {
  createWebhook(webhook: StoredWebhook): Promise<void>;
  listWebhooks(): Promise<StoredWebhook[]>;
  getWebhook(id: string): Promise<StoredWebhook | null>;
  /** Applies a patch; answers the endpoint as it now is, or null if there is none. */
  updateWebhook(id: string, patch: WebhookPatch): Promise<StoredWebhook | null>;
  /** Removes an endpoint and its deliveries; false if there was none. */
  deleteWebhook(id: string): Promise<boolean>;
  /** An endpoint's deliveries, newest first, those with an id below `before`. */
  listDeliveries(webhookId: string, query: { before?: number; limit: number }): Promise<{ deliveries: StoredDelivery[]; more: boolean }>;
  /** Puts a delivery back in the queue, due at `now`; null if the endpoint has no such delivery. */
  retryDelivery(webhookId: string, deliveryId: number, now: number): Promise<StoredDelivery | null>;
  /**
   * Leases up to `limit` enabled endpoints whose oldest pending delivery is due and whose
   * lease (if any) has run out, to `owner` until `now + leaseMs`. Across instances on one
   * database an endpoint is leased to one of them at a time.
   */
  leaseEndpoints(owner: string, now: number, leaseMs: number, limit: number): Promise<StoredWebhook[]>;
  /** The oldest pending delivery of an endpoint: the only one that may go next, which keeps their order. */
  headDelivery(webhookId: string): Promise<StoredDelivery | null>;
  /** Records an attempt on a delivery. */
  recordAttempt(deliveryId: number, attempt: AttemptRecord): Promise<void>;
  /** Gives an endpoint's lease back, if `owner` still holds it. */
  releaseEndpoint(webhookId: string, owner: string): Promise<void>;
  /** Deletes delivered deliveries that finished before `before`; answers how many. */
  pruneDelivered(before: number): Promise<number>;
  /**
   * Registers a listener told after each of this store's commits that wrote deliveries
   * (once they can be read); returns its removal. Commits that wrote none (no endpoint
   * enabled, or none subscribed) tell nothing.
   */
  onDeliveries(listener: () => void): () => void;
}

/** A webhook write, as the core queues it for a dialect's batch (so SQLite's go through its one writer). */
export type WebhookWrite =
  | { action: 'create'; webhook: StoredWebhook }
  | { action: 'update'; id: string; patch: WebhookPatch }
  | { action: 'delete'; id: string }
  | { action: 'retry'; webhookId: string; deliveryId: number; now: number }
  | { action: 'lease'; owner: string; now: number; leaseMs: number; limit: number }
  | { action: 'record'; deliveryId: number; attempt: AttemptRecord }
  | { action: 'release'; webhookId: string; owner: string }
  | { action: 'prune'; before: number };

/** The webhook reads a dialect answers, each one statement. */
export interface WebhookReads {
  /** Whether an endpoint could be leased at `now` (enabled, free, a delivery due): a lease is a write, this a read. */
  anyLeasable(now: number): Awaitable<boolean>;
  listWebhooks(): Awaitable<StoredWebhook[]>;
  getWebhook(id: string): Awaitable<StoredWebhook | null>;
  /** Newest first, ids below `before`, at most `fetch`. */
  listDeliveries(webhookId: string, before: number, fetch: number): Awaitable<StoredDelivery[]>;
  /** The attempts of the deliveries {@link listDeliveries} answers for the same arguments, by delivery, oldest first. */
  listAttempts(webhookId: string, before: number, fetch: number): Awaitable<AttemptRow[]>;
  headDelivery(webhookId: string): Awaitable<StoredDelivery | null>;
}

type Awaitable<T> = T | Promise<T>;

/**
 * The one {@link WebhookStore}: reads from the dialect, writes queued as `webhook`
 * operations through the store's group commit, like every other write.
 */
export class CoreWebhookStore implements WebhookStore {
  private readonly listeners = new Set<() => void>();

  constructor(
    private readonly reads: WebhookReads,
    private readonly read: <T>(fn: () => Awaitable<T>) => Promise<T>,
    private readonly write: (w: WebhookWrite) => Promise<unknown>,
  ) {}

  async createWebhook(webhook: StoredWebhook): Promise<void> {
    await this.write({ action: 'create', webhook });
  }

  listWebhooks(): Promise<StoredWebhook[]> {
    return this.read(() => this.reads.listWebhooks());
  }

  getWebhook(id: string): Promise<StoredWebhook | null> {
    return this.read(() => this.reads.getWebhook(id));
  }

  updateWebhook(id: string, patch: WebhookPatch): Promise<StoredWebhook | null> {
    return this.write({ action: 'update', id, patch }) as Promise<StoredWebhook | null>;
  }

  deleteWebhook(id: string): Promise<boolean> {
    return this.write({ action: 'delete', id }) as Promise<boolean>;
  }

  async listDeliveries(webhookId: string, query: { before?: number; limit: number }): Promise<{ deliveries: StoredDelivery[]; more: boolean }> {
    const before = query.before ?? Number.MAX_SAFE_INTEGER;
    const [rows, attempts] = await this.read(async () => [
      await this.reads.listDeliveries(webhookId, before, query.limit + 1),
      await this.reads.listAttempts(webhookId, before, query.limit),
    ] as const);
    return { deliveries: withHistory(rows.slice(0, query.limit), attempts), more: rows.length > query.limit };
  }

  async retryDelivery(webhookId: string, deliveryId: number, now: number): Promise<StoredDelivery | null> {
    const delivery = await this.write({ action: 'retry', webhookId, deliveryId, now }) as StoredDelivery | null;
    if (!delivery) return null;
    // Its attempts: those of the one delivery of this endpoint below deliveryId + 1.
    return withHistory([delivery], await this.read(() => this.reads.listAttempts(webhookId, deliveryId + 1, 1)))[0]!;
  }

  async leaseEndpoints(owner: string, now: number, leaseMs: number, limit: number): Promise<StoredWebhook[]> {
    // The dispatcher asks after every commit and every second: nearly always there is
    // nothing due, and a lease write would be a commit (an fsync) of its own each time.
    if (!(await this.read(() => this.reads.anyLeasable(now)))) return [];
    return this.write({ action: 'lease', owner, now, leaseMs, limit }) as Promise<StoredWebhook[]>;
  }

  headDelivery(webhookId: string): Promise<StoredDelivery | null> {
    return this.read(() => this.reads.headDelivery(webhookId));
  }

  async recordAttempt(deliveryId: number, attempt: AttemptRecord): Promise<void> {
    await this.write({ action: 'record', deliveryId, attempt });
  }

  async releaseEndpoint(webhookId: string, owner: string): Promise<void> {
    await this.write({ action: 'release', webhookId, owner });
  }

  pruneDelivered(before: number): Promise<number> {
    return this.write({ action: 'prune', before }) as Promise<number>;
  }

  onDeliveries(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The group commit's word that a batch which wrote deliveries may be shown. */
  deliveriesCommitted(): void {
    for (const l of this.listeners) l();
  }
}

/** One event for the outbox: its type and the body every subscribed endpoint receives. */
export interface OutboxEvent {
  type: WebhookEventType;
  payload: string;
}

function outboxEvent(type: WebhookEventType, now: number, data: unknown): OutboxEvent {
  return { type, payload: JSON.stringify({ type, timestamp: new Date(now).toISOString(), data }) };
}

/**
 * The webhook event a committed write makes, if any. Imported records are history, not
 * news, as for live streams.
 */
export function outboxEventOf(write: StoreWrite, value: unknown, now: number): OutboxEvent | undefined {
  switch (write.op) {
    case 'send': {
      const out = value as SendOutcome;
      return out.kind === 'stored' ? outboxEvent('message.created', now, out.message) : undefined;
    }
    case 'delete': {
      const m = value as Message | null;
      return m ? outboxEvent('message.deleted', now, { id: m.id, fromUser: m.fromUser, toUser: m.toUser }) : undefined;
    }
    case 'markRead': {
      const r = value as ReadOutcome;
      return r.ids.length > 0 ? outboxEvent('message.read', now, { user: write.user, ids: r.ids, readAt: r.readAt }) : undefined;
    }
    case 'createUser':
      return value === true ? outboxEvent('user.created', now, { id: write.id }) : undefined;
    case 'deleteUser':
      return value === true ? outboxEvent('user.removed', now, { id: write.id }) : undefined;
    default:
      return undefined;
  }
}
