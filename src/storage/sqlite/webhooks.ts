/**
 * Webhooks in SQLite's dialect. Reads run on the main thread's connection; every write
 * (endpoint changes, leases, attempts, and the outbox rows of each change) runs on the
 * write connection (main-writer.ts), the only one, the outbox inside the batch transaction of the
 * change itself.
 */
import type Database from 'better-sqlite3';
import {
  ATTEMPTS_KEPT, DELIVERY_COLUMNS, toDelivery, toWebhook, WEBHOOK_COLUMNS,
  type AttemptRow, type DeliveryRow, type OutboxEvent, type WebhookReads, type WebhookRow, type WebhookWrite,
} from '../webhooks.js';

/** An endpoint `w` that is enabled, not leased at `@now`, and whose oldest pending delivery is due. */
const LEASABLE = `w.enabled = 1 AND (w.lease_until IS NULL OR w.lease_until <= @now)
  AND (SELECT d.next_attempt_at FROM webhook_deliveries d
       WHERE d.webhook_id = w.id AND d.status = 'pending' ORDER BY d.id LIMIT 1) <= @now`;

/** The write connection's side: applies {@link WebhookWrite}s and writes the outbox. */
export class SqliteWebhookWrites {
  private readonly stmt;

  constructor(private readonly db: Database.Database) {
    this.stmt = {
      any: db.prepare('SELECT 1 FROM webhooks WHERE enabled = 1 LIMIT 1').pluck(),
      // One row per subscribed, enabled endpoint, in endpoint order; the id orders them.
      outbox: db.prepare(`INSERT INTO webhook_deliveries (webhook_id, type, payload, created_at, next_attempt_at)
        SELECT id, @type, @payload, @now, @now FROM webhooks WHERE enabled = 1 AND instr(' ' || events || ' ', ' ' || @type || ' ') > 0 ORDER BY id`),
      create: db.prepare(`INSERT INTO webhooks (${WEBHOOK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      get: db.prepare(`SELECT ${WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?`),
      delete: db.prepare('DELETE FROM webhooks WHERE id = ?'),
      retry: db.prepare(`UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, finished_at = NULL
        WHERE id = ? AND webhook_id = ? RETURNING ${DELIVERY_COLUMNS}`),
      lease: db.prepare(`UPDATE webhooks SET lease_owner = @owner, lease_until = @now + @leaseMs
        WHERE id IN (SELECT w.id FROM webhooks w WHERE ${LEASABLE} ORDER BY w.id LIMIT @limit)
        RETURNING ${WEBHOOK_COLUMNS}`),
      record: db.prepare(`UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, last_attempt_at = ?,
        last_status = ?, last_error = ?, next_attempt_at = ?, finished_at = CASE WHEN ? = 'pending' THEN NULL ELSE ? END
        WHERE id = ? RETURNING attempts`).pluck(),
      attempt: db.prepare('INSERT INTO webhook_attempts (delivery_id, n, at, http_status, error) VALUES (?, ?, ?, ?, ?)'),
      trim: db.prepare('DELETE FROM webhook_attempts WHERE delivery_id = ? AND n <= ?'),
      release: db.prepare('UPDATE webhooks SET lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?'),
      prune: db.prepare("DELETE FROM webhook_deliveries WHERE status = 'delivered' AND finished_at < ?"),
    };
  }

  /** Whether any endpoint is enabled: most stores have none, and then a change makes no event at all. */
  anyEnabled(): boolean {
    return this.stmt.any.get() !== undefined;
  }

  /** Writes the deliveries of a change's event, inside the change's transaction (or savepoint); answers how many. */
  outbox(event: OutboxEvent, now: number): number {
    return this.stmt.outbox.run({ type: event.type, payload: event.payload, now }).changes;
  }

  /** Applies one write; answers what the store method answers. */
  apply(w: WebhookWrite): unknown {
    switch (w.action) {
      case 'create': {
        const h = w.webhook;
        this.stmt.create.run(h.id, h.url, h.events.join(' '), h.description, h.secret, h.enabled ? 1 : 0,
          h.disabledReason, h.failingSince, h.createdAt);
        return true;
      }
      case 'update': {
        const row = this.stmt.get.get(w.id) as WebhookRow | undefined;
        if (!row) return null;
        const p = w.patch;
        const sets: string[] = [];
        const args: unknown[] = [];
        const set = (column: string, value: unknown) => {
          sets.push(`${column} = ?`);
          args.push(value);
        };
        if (p.url !== undefined) set('url', p.url);
        if (p.events !== undefined) set('events', p.events.join(' '));
        if (p.description !== undefined) set('description', p.description);
        if (p.enabled !== undefined) set('enabled', p.enabled ? 1 : 0);
        if (p.disabledReason !== undefined) set('disabled_reason', p.disabledReason);
        if (p.failingSince !== undefined) set('failing_since', p.failingSince);
        if (sets.length > 0) this.db.prepare(`UPDATE webhooks SET ${sets.join(', ')} WHERE id = ?`).run(...args, w.id);
        return toWebhook(this.stmt.get.get(w.id) as WebhookRow);
      }
      case 'delete': return this.stmt.delete.run(w.id).changes > 0;
      case 'retry': {
        const row = this.stmt.retry.get(w.now, w.deliveryId, w.webhookId) as DeliveryRow | undefined;
        return row ? toDelivery(row) : null;
      }
      case 'lease': return (this.stmt.lease.all({ owner: w.owner, now: w.now, leaseMs: w.leaseMs, limit: w.limit }) as WebhookRow[]).map(toWebhook);
      case 'record': {
        const a = w.attempt;
        const n = this.stmt.record.get(a.status, a.at, a.httpStatus, a.error, a.nextAttemptAt, a.status, a.at, w.deliveryId) as number | undefined;
        if (n === undefined) return true;
        this.stmt.attempt.run(w.deliveryId, n, a.at, a.httpStatus, a.error);
        this.stmt.trim.run(w.deliveryId, n - ATTEMPTS_KEPT);
        return true;
      }
      case 'release': this.stmt.release.run(w.webhookId, w.owner); return true;
      case 'prune': return this.stmt.prune.run(w.before).changes;
    }
  }
}

/** The reads, on the main thread's connection. */
export function sqliteWebhookReads(db: Database.Database): WebhookReads {
  const list = db.prepare(`SELECT ${WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_at, id`);
  const get = db.prepare(`SELECT ${WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?`);
  const deliveries = db.prepare(`SELECT ${DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = ? AND id < ? ORDER BY id DESC LIMIT ?`);
  const head = db.prepare(`SELECT ${DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = ? AND status = 'pending' ORDER BY id LIMIT 1`);
  const leasable = db.prepare(`SELECT 1 FROM webhooks w WHERE ${LEASABLE} LIMIT 1`).pluck();
  const attempts = db.prepare(`SELECT delivery_id, at, http_status, error FROM webhook_attempts WHERE delivery_id IN
    (SELECT id FROM webhook_deliveries WHERE webhook_id = ? AND id < ? ORDER BY id DESC LIMIT ?) ORDER BY delivery_id, n`);
  return {
    anyLeasable: (now) => leasable.get({ now }) !== undefined,
    listWebhooks: () => (list.all() as WebhookRow[]).map(toWebhook),
    getWebhook: (id) => {
      const row = get.get(id) as WebhookRow | undefined;
      return row ? toWebhook(row) : null;
    },
    listDeliveries: (webhookId, before, fetch) => (deliveries.all(webhookId, before, fetch) as DeliveryRow[]).map(toDelivery),
    listAttempts: (webhookId, before, fetch) => attempts.all(webhookId, before, fetch) as AttemptRow[],
    headDelivery: (webhookId) => {
      const row = head.get(webhookId) as DeliveryRow | undefined;
      return row ? toDelivery(row) : null;
    },
  };
}
