/**
 * Webhooks in PostgreSQL's dialect. Webhook writes run in the store's batches like every
 * other write; the outbox rows of a change are written by {@link writeOutbox} inside the
 * change's own batch transaction, before its COMMIT.
 *
 * Several instances share the outbox: an endpoint is leased to one at a time, claimed with
 * `FOR UPDATE SKIP LOCKED`, so each attempt goes out once and an endpoint's deliveries stay
 * in order, while instances deliver to different endpoints side by side.
 */
import type pg from 'pg';
import {
  ATTEMPTS_KEPT, DELIVERY_COLUMNS, toDelivery, toWebhook, WEBHOOK_COLUMNS,
  type AttemptRow, type DeliveryRow, type OutboxEvent, type WebhookReads, type WebhookRow, type WebhookWrite,
} from '../webhooks.js';

/** An endpoint `w` that is enabled, not leased at `now` (a parameter), and whose oldest pending delivery is due. */
function leasable(now: string): string {
  return `w.enabled AND (w.lease_until IS NULL OR w.lease_until <= ${now})
    AND (SELECT d.next_attempt_at FROM webhook_deliveries d
         WHERE d.webhook_id = w.id AND d.status = 'pending' ORDER BY d.id LIMIT 1) <= ${now}`;
}

/**
 * Writes a batch's events to the outbox on the batch's own connection, before its COMMIT:
 * one row per event and subscribed endpoint, ids in event order (they are drawn under the
 * store's write lock, so they are commit-ordered across instances too). Answers how many.
 */
export async function writeOutbox(client: pg.ClientBase, events: readonly OutboxEvent[], now: number): Promise<number> {
  if (events.length === 0) return 0;
  const result = await client.query({
    name: 'postbox_webhook_outbox',
    text: `INSERT INTO webhook_deliveries (webhook_id, type, payload, created_at, next_attempt_at)
      SELECT w.id, e.type, e.payload, $3, $3
      FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS e(type, payload, n)
      JOIN webhooks w ON w.enabled AND position(' ' || e.type || ' ' IN ' ' || w.events || ' ') > 0
      ORDER BY e.n, w.id`,
    values: [events.map((e) => e.type), events.map((e) => e.payload), now],
  });
  return result.rowCount ?? 0;
}

/** Applies webhook writes on a batch's connection, inside its transaction. */
export async function applyWebhookWrite(client: pg.ClientBase, w: WebhookWrite): Promise<unknown> {
  const rows = async <R extends object>(text: string, values: unknown[]) => (await client.query<R>(text, values)).rows;
  switch (w.action) {
    case 'create': {
      const h = w.webhook;
      await rows(`INSERT INTO webhooks (${WEBHOOK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, [
        h.id, h.url, h.events.join(' '), h.description, h.secret, h.enabled, h.disabledReason, h.failingSince, h.createdAt,
      ]);
      return true;
    }
    case 'update': {
      const p = w.patch;
      const sets: string[] = [];
      const args: unknown[] = [w.id];
      const set = (column: string, value: unknown) => {
        args.push(value);
        sets.push(`${column} = $${args.length}`);
      };
      if (p.url !== undefined) set('url', p.url);
      if (p.events !== undefined) set('events', p.events.join(' '));
      if (p.description !== undefined) set('description', p.description);
      if (p.enabled !== undefined) set('enabled', p.enabled);
      if (p.disabledReason !== undefined) set('disabled_reason', p.disabledReason);
      if (p.failingSince !== undefined) set('failing_since', p.failingSince);
      const sql = sets.length > 0
        ? `UPDATE webhooks SET ${sets.join(', ')} WHERE id = $1 RETURNING ${WEBHOOK_COLUMNS}`
        : `SELECT ${WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1`;
      const row = (await rows<WebhookRow>(sql, args))[0];
      return row ? toWebhook(row) : null;
    }
    case 'delete': return (await rows('DELETE FROM webhooks WHERE id = $1 RETURNING id', [w.id])).length > 0;
    case 'retry': {
      const row = (await rows<DeliveryRow>(
        `UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1, finished_at = NULL
         WHERE id = $2 AND webhook_id = $3 RETURNING ${DELIVERY_COLUMNS}`,
        [w.now, w.deliveryId, w.webhookId],
      ))[0];
      return row ? toDelivery(row) : null;
    }
    case 'lease':
      // SKIP LOCKED: an endpoint being leased elsewhere at this moment is passed over, not
      // waited for; once that lease commits, it keeps the endpoint out of every later claim.
      return (await rows<WebhookRow>(
        `UPDATE webhooks SET lease_owner = $1, lease_until = $2::bigint + $3::bigint
         WHERE id IN (SELECT w.id FROM webhooks w WHERE ${leasable('$2')} ORDER BY w.id LIMIT $4 FOR UPDATE OF w SKIP LOCKED)
         RETURNING ${WEBHOOK_COLUMNS}`,
        [w.owner, w.now, w.leaseMs, w.limit],
      )).map(toWebhook);
    case 'record': {
      const a = w.attempt;
      // One round trip: the delivery, its attempt row, and the attempts past the kept ones
      // (the DELETE sees the table as before the INSERT, which it does not need).
      await rows(
        `WITH d AS (
           UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, last_attempt_at = $2, last_status = $3,
             last_error = $4, next_attempt_at = $5, finished_at = CASE WHEN $1 = 'pending' THEN NULL ELSE $2::bigint END
           WHERE id = $6 RETURNING id, attempts),
         a AS (INSERT INTO webhook_attempts (delivery_id, n, at, http_status, error) SELECT id, attempts, $2, $3, $4 FROM d)
         DELETE FROM webhook_attempts WHERE delivery_id = $6 AND n <= (SELECT attempts FROM d) - $7::integer`,
        [a.status, a.at, a.httpStatus, a.error, a.nextAttemptAt, w.deliveryId, ATTEMPTS_KEPT],
      );
      return true;
    }
    case 'release':
      await rows('UPDATE webhooks SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2', [w.webhookId, w.owner]);
      return true;
    case 'prune':
      return (await rows("DELETE FROM webhook_deliveries WHERE status = 'delivered' AND finished_at < $1 RETURNING id", [w.before])).length;
  }
}

/** The reads, through the pool. */
export function pgWebhookReads(query: <R>(text: string, values: unknown[]) => Promise<R[]>): WebhookReads {
  return {
    anyLeasable: async (now) => (await query(`SELECT 1 FROM webhooks w WHERE ${leasable('$1::bigint')} LIMIT 1`, [now])).length > 0,
    listWebhooks: async () => (await query<WebhookRow>(`SELECT ${WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_at, id`, [])).map(toWebhook),
    getWebhook: async (id) => {
      const row = (await query<WebhookRow>(`SELECT ${WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1`, [id]))[0];
      return row ? toWebhook(row) : null;
    },
    listDeliveries: async (webhookId, before, fetch) => (await query<DeliveryRow>(
      `SELECT ${DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3`,
      [webhookId, before, fetch],
    )).map(toDelivery),
    listAttempts: (webhookId, before, fetch) => query<AttemptRow>(
      `SELECT delivery_id, at, http_status, error FROM webhook_attempts WHERE delivery_id IN
         (SELECT id FROM webhook_deliveries WHERE webhook_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3) ORDER BY delivery_id, n`,
      [webhookId, before, fetch],
    ),
    headDelivery: async (webhookId) => {
      const row = (await query<DeliveryRow>(
        `SELECT ${DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 AND status = 'pending' ORDER BY id LIMIT 1`,
        [webhookId],
      ))[0];
      return row ? toDelivery(row) : null;
    },
  };
}
