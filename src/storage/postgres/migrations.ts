/**
 * Numbered PostgreSQL migrations, applied in order at start and by `postbox migrate`.
 *
 * TypeScript strings rather than .sql files, so the build needs no copy step. A published
 * migration is never edited; a change is a new number. The schema mirrors the SQLite one
 * table for table, so an export from either imports into the other unchanged.
 */
import type pg from 'pg';
import type { Migration } from '../storage.js';

/** Every migration, oldest first. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'messages, conversations, idempotency keys, users and tokens',
    sql: `
      -- An identity, never max()+1: a sequence value is never handed out twice, even after
      -- the newest message is deleted or a transaction rolls back, so a cursor a client holds
      -- can never come to point before a new message. ALWAYS: only an import, saying so with
      -- OVERRIDING SYSTEM VALUE, may choose an id.
      -- Times are epoch milliseconds, as in SQLite: exact round trips through export and
      -- import, and no time-zone or microsecond conversion on the hot path.
      -- User ids compare bytewise (COLLATE "C"), as SQLite's BINARY does, so that lists come
      -- out in the same order on both backends whatever the database's locale.
      CREATE TABLE messages (
        seq       bigint GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME messages_seq_seq) PRIMARY KEY,
        from_user text COLLATE "C" NOT NULL,
        to_user   text COLLATE "C" NOT NULL,
        body      text   NOT NULL,
        sent_at   bigint NOT NULL,
        read_at   bigint
      );
      CREATE INDEX messages_inbox  ON messages (to_user, seq);
      CREATE INDEX messages_sent   ON messages (from_user, seq);
      CREATE INDEX messages_pair   ON messages (to_user, from_user, seq);
      CREATE INDEX messages_unread ON messages (to_user, seq) WHERE read_at IS NULL;

      -- One row per (owner, peer), kept in step with messages, so the conversation list
      -- costs O(page) rather than a scan of the owner's whole history.
      CREATE TABLE conversations (
        owner    text COLLATE "C" NOT NULL,
        peer     text COLLATE "C" NOT NULL,
        last_seq bigint  NOT NULL,
        unread   integer NOT NULL DEFAULT 0,
        PRIMARY KEY (owner, peer)
      );
      CREATE INDEX conversations_recent ON conversations (owner, last_seq);

      CREATE TABLE idempotency_keys (
        sender      text COLLATE "C" NOT NULL,
        key         text COLLATE "C" NOT NULL,
        fingerprint text   NOT NULL,
        response    text   NOT NULL,
        created_at  bigint NOT NULL,
        PRIMARY KEY (sender, key)
      );
      CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);

      CREATE TABLE users (
        id         text COLLATE "C" PRIMARY KEY,
        created_at bigint NOT NULL
      );

      CREATE TABLE tokens (
        hash       text COLLATE "C" PRIMARY KEY,
        user_id    text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        created_at bigint NOT NULL
      );
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
        id         text COLLATE "C" PRIMARY KEY,
        removed_at bigint NOT NULL
      );
    `,
  },
  {
    version: 3,
    name: 'token scopes; webhooks and their delivery outbox',
    sql: `
      ALTER TABLE tokens ADD COLUMN scopes text NOT NULL DEFAULT 'full';

      -- As in SQLite: events space-separated; the lease gives one instance at a time an
      -- endpoint to deliver to (claimed with FOR UPDATE SKIP LOCKED).
      CREATE TABLE webhooks (
        id              text COLLATE "C" PRIMARY KEY,
        url             text    NOT NULL,
        events          text    NOT NULL,
        description     text,
        secret          text    NOT NULL,
        enabled         boolean NOT NULL DEFAULT true,
        disabled_reason text,
        failing_since   bigint,
        lease_owner     text,
        lease_until     bigint,
        created_at      bigint  NOT NULL
      );

      CREATE TABLE webhook_deliveries (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        webhook_id      text COLLATE "C" NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
        type            text    NOT NULL,
        payload         text    NOT NULL,
        created_at      bigint  NOT NULL,
        status          text    NOT NULL DEFAULT 'pending',
        attempts        integer NOT NULL DEFAULT 0,
        next_attempt_at bigint  NOT NULL,
        last_attempt_at bigint,
        last_status     integer,
        last_error      text,
        finished_at     bigint
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
      -- import can make differ from id order.
      CREATE INDEX messages_age ON messages (sent_at);

      -- When a maintenance task (retention) last ran, so that it runs once per period for
      -- the whole cluster, whichever instance claims it.
      CREATE TABLE maintenance (
        task   text COLLATE "C" PRIMARY KEY,
        ran_at bigint NOT NULL
      );
    `,
  },
  {
    version: 5,
    name: 'maintenance claims held for the whole run',
    sql: `
      -- The instance running a task and until when its lease lasts (renewed by each of its
      -- writes), so a long run is never overlapped and a crashed one's claim runs out.
      ALTER TABLE maintenance ADD COLUMN holder text, ADD COLUMN held_until bigint;
    `,
  },
  {
    version: 6,
    name: 'webhook attempts, one row each',
    sql: `
      -- As in SQLite: every attempt on a delivery (n counts them from 1), the last few kept.
      CREATE TABLE webhook_attempts (
        delivery_id bigint  NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
        n           integer NOT NULL,
        at          bigint  NOT NULL,
        http_status integer,
        error       text,
        PRIMARY KEY (delivery_id, n)
      );
      INSERT INTO webhook_attempts (delivery_id, n, at, http_status, error)
        SELECT id, attempts, last_attempt_at, last_status, last_error FROM webhook_deliveries
        WHERE last_attempt_at IS NOT NULL AND attempts > 0;
    `,
  },
];

/**
 * The first key of the two-key advisory lock that serializes migrations. Arbitrary but
 * fixed ("PbMg"), so that it does not collide with locks other software takes.
 */
const MIGRATION_LOCK_CLASS = 0x50624d67;

/**
 * Brings the schema on the connection's search_path to the newest version, inside one
 * transaction holding an advisory lock on that schema: two instances starting together
 * queue up, and the second finds the work done. Answers the versions it applied.
 */
export async function migrate(client: pg.ClientBase): Promise<number[]> {
  const schema = (await client.query<{ schema: string | null }>('SELECT current_schema() AS schema')).rows[0]?.schema;
  if (!schema) {
    throw new Error('PostgreSQL has no schema to create tables in: no schema on the search_path exists');
  }
  // A migration may wait for another instance's and may rebuild a large table: the
  // session's usual bounds on waiting do not apply to it.
  await client.query('BEGIN; SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0');
  try {
    // Transaction-scoped, so a crash or a dropped connection can never leave it held.
    await client.query('SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))', [MIGRATION_LOCK_CLASS]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set(
      (await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version),
    );
    const applied: number[] = [];
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      await client.query(m.sql);
      await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      applied.push(m.version);
    }
    await client.query('COMMIT');
    return applied;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
