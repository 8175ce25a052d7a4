/**
 * Numbered SQLite migrations, applied in order at start and by `postbox migrate`.
 *
 * Kept as TypeScript strings rather than .sql files so the build needs no copy step.
 * A published migration is never edited; a change is a new number.
 */
import type Database from 'better-sqlite3';
import type { Migration } from '../storage.js';

/** Every migration, oldest first. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'messages, conversations, idempotency keys, users and tokens',
    sql: `
      -- Clustered by recipient: an inbox page is one contiguous range of the table, read with
      -- no lookup per message. json is the message exactly as it goes on the wire, kept ready
      -- so that reading a page is concatenation rather than a rebuild; read_at (ms) marks it
      -- read and feeds the unread index, and marking read rewrites the "readAt" at json's end.
      CREATE TABLE messages (
        to_user   TEXT    NOT NULL,
        seq       INTEGER NOT NULL,
        from_user TEXT    NOT NULL,
        json      TEXT    NOT NULL,
        read_at   INTEGER,
        PRIMARY KEY (to_user, seq)
      ) WITHOUT ROWID;
      CREATE UNIQUE INDEX messages_seq ON messages (seq);
      CREATE INDEX messages_sent   ON messages (from_user, seq);
      CREATE INDEX messages_pair   ON messages (to_user, from_user, seq);
      CREATE INDEX messages_unread ON messages (to_user, seq) WHERE read_at IS NULL;

      -- The last message id handed out. Kept apart from the messages, so an id is never
      -- reused, even after the newest message is deleted: a cursor a client holds can never
      -- come to point before a new message.
      CREATE TABLE counters (
        name  TEXT    PRIMARY KEY,
        value INTEGER NOT NULL
      ) WITHOUT ROWID;
      INSERT INTO counters (name, value) VALUES ('message_seq', 0);

      -- One row per (owner, peer), kept in step with messages, so the conversation list
      -- costs O(page) rather than a scan of the owner's whole history.
      CREATE TABLE conversations (
        owner    TEXT    NOT NULL,
        peer     TEXT    NOT NULL,
        last_seq INTEGER NOT NULL,
        unread   INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (owner, peer)
      ) WITHOUT ROWID;
      CREATE INDEX conversations_recent ON conversations (owner, last_seq);

      CREATE TABLE idempotency_keys (
        sender      TEXT    NOT NULL,
        key         TEXT    NOT NULL,
        fingerprint TEXT    NOT NULL,
        response    TEXT    NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (sender, key)
      ) WITHOUT ROWID;
      CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);

      CREATE TABLE users (
        id         TEXT    PRIMARY KEY,
        created_at INTEGER NOT NULL
      ) WITHOUT ROWID;

      CREATE TABLE tokens (
        hash       TEXT    PRIMARY KEY,
        user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX tokens_user ON tokens (user_id);
    `,
  },
  {
    version: 2,
    name: 'ids of removed users stay reserved',
    sql: `
      -- A removed user's messages stay, so its id must not go to someone new, who would
      -- inherit them; a purge removes the messages and this row.
      CREATE TABLE removed_users (
        id         TEXT    PRIMARY KEY,
        removed_at INTEGER NOT NULL
      );
    `,
  },
  {
    version: 3,
    name: 'token scopes; webhooks and their delivery outbox',
    sql: `
      ALTER TABLE tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT 'full';

      -- events: space-separated event types. A lease (owner, until) gives one instance at a
      -- time the right to deliver to an endpoint, which keeps its deliveries in order and
      -- each attempt single across instances.
      CREATE TABLE webhooks (
        id              TEXT    PRIMARY KEY,
        url             TEXT    NOT NULL,
        events          TEXT    NOT NULL,
        description     TEXT,
        secret          TEXT    NOT NULL,
        enabled         INTEGER NOT NULL DEFAULT 1,
        disabled_reason TEXT,
        failing_since   INTEGER,
        lease_owner     TEXT,
        lease_until     INTEGER,
        created_at      INTEGER NOT NULL
      ) WITHOUT ROWID;

      -- The outbox: a change writes its deliveries in its own transaction. id orders them
      -- per endpoint; status is pending, delivered or failed.
      CREATE TABLE webhook_deliveries (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        webhook_id      TEXT    NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
        type            TEXT    NOT NULL,
        payload         TEXT    NOT NULL,
        created_at      INTEGER NOT NULL,
        status          TEXT    NOT NULL DEFAULT 'pending',
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_attempt_at INTEGER,
        last_status     INTEGER,
        last_error      TEXT,
        finished_at     INTEGER
      );
      CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
      CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, id) WHERE status = 'pending';
      CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (finished_at) WHERE status = 'delivered';
    `,
  },
  {
    version: 4,
    name: 'retention: messages by age, and maintenance claims',
    sql: `
      -- Retention removes the oldest messages first by the time they were sent, which an
      -- import can make differ from id order: an index on the sentAt the wire JSON carries
      -- (canonical ISO 8601 UTC, so text order is time order). Queries must spell the
      -- expression exactly so for SQLite to use it.
      CREATE INDEX messages_age ON messages (json_extract(json, '$.sentAt'));

      -- When a maintenance task (retention) last ran, so it runs once per period for the store.
      CREATE TABLE maintenance (
        task   TEXT    PRIMARY KEY,
        ran_at INTEGER NOT NULL
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 5,
    name: 'maintenance claims held for the whole run',
    sql: `
      -- The instance running a task and until when its lease lasts (renewed by each of its
      -- writes), so a long run is never overlapped and a crashed one's claim runs out.
      ALTER TABLE maintenance ADD COLUMN holder TEXT;
      ALTER TABLE maintenance ADD COLUMN held_until INTEGER;
    `,
  },
  {
    version: 6,
    name: 'webhook attempts, one row each',
    sql: `
      -- Every attempt on a delivery (n counts them from 1), not just the latest: the
      -- deliveries listing shows them. The last few are kept (ATTEMPTS_KEPT in
      -- storage/webhooks.ts); they go with their delivery.
      CREATE TABLE webhook_attempts (
        delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
        n           INTEGER NOT NULL,
        at          INTEGER NOT NULL,
        http_status INTEGER,
        error       TEXT,
        PRIMARY KEY (delivery_id, n)
      ) WITHOUT ROWID;
      -- What was known before: each delivery's latest attempt.
      INSERT INTO webhook_attempts (delivery_id, n, at, http_status, error)
        SELECT id, attempts, last_attempt_at, last_status, last_error FROM webhook_deliveries
        WHERE last_attempt_at IS NOT NULL AND attempts > 0;
    `,
  },
];

/**
 * Brings a database to the newest schema inside one immediate transaction, so two processes
 * starting at once cannot both apply a step. Answers the versions it applied.
 */
export function migrate(db: Database.Database): number[] {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
  const apply = db.transaction(() => {
    const done = new Set(
      (db.prepare('SELECT version FROM schema_migrations').pluck().all() as number[]),
    );
    const applied: number[] = [];
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)')
        .run(m.version, m.name, Date.now());
      applied.push(m.version);
    }
    return applied;
  });
  return apply.immediate();
}
