/**
 * The PostgreSQL dialect: reads straight from a connection pool, writes one batch at a time
 * (write-ops.ts: one transaction per batch under the store's write lock, which makes ids
 * commit-ordered), and events through LISTEN/NOTIFY (change-feed.ts), so that any number of
 * instances on one database behave as one SQLite store. Everything else is the core's
 * (../core.ts).
 *
 * Every failure to reach the database surfaces as `storage_unavailable` (a 503 with
 * Retry-After), and nothing needs a restart when the database comes back: the pool opens
 * new connections on demand and the change feed reconnects by itself.
 */
import pg from 'pg';
import {
  CoreStorage, Listeners, partiesSql, statusOf, type ConversationRow, type Dialect, type DialectReads, type Reservation, type TokenRow,
  type UserStatusRow,
} from '../core.js';
import type { BatchResult } from '../group-commit.js';
import { windowSql } from '../paging.js';
import type { InboxQuery, StoredUser, StorageLogger, StoreEvent, TokenOwner, WireRow } from '../storage.js';
import { outboxEventOf, type OutboxEvent, type WebhookReads } from '../webhooks.js';
import { eventsOf, type StoreWrite, type WriteReply } from '../writes.js';
import { ChangeFeed, channelFor } from './change-feed.js';
import { describeReadFailure, isDamage, isTransient, unavailable } from './failures.js';
import { StorageDamaged } from '../failures.js';
import { migrate } from './migrations.js';
import { PG_TYPES, WIRE_COLUMNS, WIRE_JSON } from './rows.js';
import { pgWebhookReads, writeOutbox } from './webhooks.js';
import { WriteSide } from './write-ops.js';

/** Options for {@link openPostgresStorage}. */
export interface PostgresOptions {
  /**
   * A `postgres://` URL. Its query may carry libpq-style settings, e.g.
   * `?options=-c%20search_path%3Dpostbox` to keep Postbox's tables in their own schema.
   */
  url: string;
  /** `fsync`: a send is answered once its commit is flushed; `relaxed`: once committed (`synchronous_commit = off`). */
  durability: 'fsync' | 'relaxed';
  /** Pooled connections for reads and writes; the change feed holds one more. Default 10. */
  poolSize?: number;
  /** How long to wait for a pooled or a new connection before answering 503. Default 5000 ms. */
  connectTimeoutMs?: number;
  logger?: StorageLogger;
  /** Change-feed reconnection backoff, first and largest pause. Defaults 100 ms and 5 s. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** How often the LISTEN connection is checked when idle; 0 is never. Default 10 s. */
  heartbeatMs?: number;
}

/** A PostgreSQL store: the core over this dialect. */
export type PostgresStorage = CoreStorage;

/**
 * The high half of the write lock's advisory key ("PbWr"); the low half is the OID of the
 * store's `messages` table, so stores in different schemas never wait for each other.
 */
const WRITE_LOCK_CLASS = 0x50625772n;

/**
 * Bounds on waiting, so that trouble turns into a 503 rather than requests that hang:
 * - a writer waits at most this long for the store's write lock, which only an instance
 *   stuck inside a batch could hold that long;
 * - the server ends a session left idle inside a transaction this long, which frees the
 *   write lock of an instance that vanished mid-batch (our batches never pause);
 * - no statement of ours takes anywhere near this long; past it something is wrong;
 * - and if the server's answer never comes back at all (a silent network), the client
 *   gives up a little later than the server would have.
 */
const LOCK_TIMEOUT_MS = 10_000;
const IDLE_IN_TRANSACTION_MS = 10_000;
const STATEMENT_TIMEOUT_MS = 30_000;
const QUERY_TIMEOUT_MS = STATEMENT_TIMEOUT_MS + 5_000;

function connectionConfig(options: PostgresOptions): pg.ClientConfig {
  return {
    connectionString: options.url,
    application_name: 'postbox',
    // Lets the kernel notice a peer that vanished without closing the connection.
    keepAlive: true,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
    lock_timeout: LOCK_TIMEOUT_MS,
    idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_MS,
    statement_timeout: STATEMENT_TIMEOUT_MS,
    query_timeout: QUERY_TIMEOUT_MS,
    types: PG_TYPES,
  };
}

function newPool(options: PostgresOptions): pg.Pool {
  const pool = new pg.Pool({
    ...connectionConfig(options),
    max: options.poolSize ?? 10,
    idleTimeoutMillis: 30_000,
  });
  // An idle connection that dies is dropped by the pool and replaced on demand; without a
  // listener its error would crash the process.
  pool.on('error', (err) => options.logger?.warn({ err }, 'an idle PostgreSQL connection failed; it will be replaced'));
  // Likewise for a connection that dies while lent out between two queries: the next query
  // on it fails (and is reported) instead.
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

/**
 * Opens a PostgreSQL store: migrates it to the newest schema and starts listening for
 * changes. Rejects with `storage_unavailable` if the database cannot be reached.
 */
export async function openPostgresStorage(options: PostgresOptions): Promise<PostgresStorage> {
  const pool = newPool(options);
  try {
    await migrateWith(options);
    const facts = (await pool.query<{ schema: string; oid: number }>(
      "SELECT current_schema() AS schema, 'messages'::regclass::oid::bigint AS oid",
    )).rows[0]!;
    const listeners = new Listeners(options.logger);
    const dialect = new PostgresDialect(pool, options, facts, (events) => listeners.emit(events));
    await dialect.start();
    return new CoreStorage(dialect, listeners);
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw isTransient(err) ? unavailable('could not reach PostgreSQL', err) : err;
  }
}

/** Applies pending migrations to a PostgreSQL database and answers the versions applied. */
export function migratePostgres(url: string): Promise<number[]> {
  return migrateWith({ url, durability: 'fsync' });
}

/** Migrates on a connection of its own, free of the client-side query timeout a long step could outlast. */
async function migrateWith(options: PostgresOptions): Promise<number[]> {
  const client = new pg.Client({ ...connectionConfig(options), query_timeout: undefined });
  client.on('error', () => undefined); // a failure surfaces as the rejection of the query under way
  await client.connect();
  try {
    return await migrate(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}


/** A `$n` placeholder. */
const param = (n: number): string => `$${n}`;

/** See the module comment. */
class PostgresDialect implements Dialect {
  readonly kind = 'postgres';
  readonly ownFeed = true;
  readonly pingWrites = false;
  readonly reads: DialectReads;
  readonly webhookReads: WebhookReads;
  private readonly side: WriteSide;
  private readonly feed: ChangeFeed;
  private readonly channel: string;
  private readonly names = new Map<string, string>();

  constructor(
    private readonly pool: pg.Pool,
    options: PostgresOptions,
    facts: { schema: string; oid: number },
    emit: (events: readonly StoreEvent[]) => void,
  ) {
    this.channel = channelFor(facts.schema);
    this.side = new WriteSide((WRITE_LOCK_CLASS << 32n) | BigInt(facts.oid), options.durability);
    this.feed = new ChangeFeed({
      client: connectionConfig(options),
      channel: this.channel,
      fetchBodies: (seqs) => this.fetchBodies(seqs),
      emit,
      logger: options.logger,
      reconnectMinMs: options.reconnectMinMs,
      reconnectMaxMs: options.reconnectMaxMs,
      heartbeatMs: options.heartbeatMs,
    });
    const rows = (sql: string, args: unknown[]) => this.query<WireRow>(sql, args, true);
    this.webhookReads = pgWebhookReads((sql, args) => this.query(sql, args));
    this.reads = {
      message: async (seq) => (await this.query<[string]>(`SELECT ${WIRE_JSON} FROM messages m WHERE m.seq = $1`, [seq], true))[0]?.[0],
      inbox: (user, query, window) => {
        const [where, args] = inboxFilter(user, query);
        return rows(`SELECT ${WIRE_COLUMNS} FROM messages m WHERE ${where}${windowSql(window, args, param)}`, args);
      },
      sent: (user, window) => {
        const args: unknown[] = [user];
        return rows(`SELECT ${WIRE_COLUMNS} FROM messages m WHERE from_user = $1${windowSql(window, args, param)}`, args);
      },
      mailbox: (user, window) => {
        // The inbox and the sent box are each a range of an index; merging the two bounded
        // ranges keeps the cost at O(page). UNION, not UNION ALL: a message to oneself is in both.
        const args: unknown[] = [user];
        const bounds = windowSql(window, args, param);
        const side = (column: string) => `(SELECT * FROM messages WHERE ${column} = $1${bounds})`;
        return rows(`SELECT ${WIRE_COLUMNS} FROM (${side('to_user')} UNION ${side('from_user')}) AS m ` +
          `ORDER BY m.seq ${window.order} LIMIT $${args.length}`, args);
      },
      conversation: (user, peer, window) => {
        // Each direction is a range of the (to_user, from_user, seq) index; merging the two
        // bounded ranges keeps the cost at O(page) however long the history.
        const args: unknown[] = [user, peer];
        const bounds = windowSql(window, args, param);
        const side = (to: string, from: string) => `(SELECT * FROM messages WHERE to_user = ${to} AND from_user = ${from}${bounds})`;
        return rows(`SELECT ${WIRE_COLUMNS} FROM (${side('$1', '$2')} UNION ALL ${side('$2', '$1')}) AS m ` +
          `ORDER BY m.seq ${window.order} LIMIT $${args.length}`, args);
      },
      conversations: (user, before, fetch) => this.query<ConversationRow>(
        `SELECT c.peer, c.unread, ${WIRE_JSON} AS json
         FROM conversations c JOIN messages m ON m.seq = c.last_seq
         WHERE c.owner = $1 AND c.last_seq < $2 ORDER BY c.last_seq DESC LIMIT $3`,
        [user, before, fetch],
      ),
      users: async () => (await this.query<{ id: string; created_at: number }>('SELECT id, created_at FROM users ORDER BY id', []))
        .map((u): StoredUser => ({ id: u.id, createdAt: new Date(u.created_at).toISOString() })),
      tokens: async () => (await this.query<{ hash: string; user_id: string; created_at: number; scopes: string }>(
        'SELECT hash, user_id, created_at, scopes FROM tokens ORDER BY user_id, hash', [],
      )).map((t): TokenRow => ({
        user: t.user_id, hash: t.hash, createdAt: new Date(t.created_at).toISOString(), ...(t.scopes === 'full' ? {} : { scopes: t.scopes }),
      })),
      messagesAfter: (after, limit) => rows(`SELECT ${WIRE_COLUMNS} FROM messages m WHERE m.seq > $1 ORDER BY m.seq LIMIT $2`, [after, limit]),
      userForToken: async (hash) => (await this.query<{ user_id: string }>('SELECT user_id FROM tokens WHERE hash = $1', [hash]))[0]?.user_id ?? null,
      tokenOwner: async (hash) => (await this.query<TokenOwner>('SELECT user_id AS user, scopes FROM tokens WHERE hash = $1', [hash]))[0] ?? null,
      nextInbox: async (after) => (await this.query<{ to_user: string }>(
        'SELECT to_user FROM messages WHERE to_user > $1 ORDER BY to_user LIMIT 1', [after]))[0]?.to_user ?? null,
      inboxCutoff: async (user, keep) => (await this.query<{ seq: number }>(
        'SELECT seq FROM messages WHERE to_user = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2', [user, keep]))[0]?.seq ?? null,
      taskRanAt: async (task) => (await this.query<{ ran_at: number }>(
        'SELECT ran_at FROM maintenance WHERE task = $1', [task]))[0]?.ran_at ?? null,
      stats: async () => {
        // The tables and indexes of this store's schema; the WAL and checkpoints are the server's own.
        const [row] = await this.query<{ messages: number; oldest: number | null; bytes: number }>(
          `SELECT (SELECT count(*) FROM messages)::bigint AS messages, (SELECT min(sent_at) FROM messages) AS oldest,
             (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = current_schema() AND c.relkind = 'r')::bigint AS bytes`, []);
        return {
          messages: Number(row?.messages ?? 0),
          oldestSentAt: row?.oldest == null ? null : new Date(Number(row.oldest)).toISOString(),
          storeBytes: Number(row?.bytes ?? 0),
          walBytes: null,
          lastCheckpointAt: null,
        };
      },
      userExists: async (id) => (await this.query('SELECT 1 FROM users WHERE id = $1', [id])).length > 0,
      reservations: async () => (await this.query<{ id: string; removed_at: number }>('SELECT id, removed_at FROM removed_users ORDER BY id', []))
        .map((r): Reservation => ({ id: r.id, removedAt: new Date(Number(r.removed_at)).toISOString() })),
      parties: async (side, after, limit) => (await this.query<{ id: string }>(partiesSql(side, after === null, param), [after ?? '', limit]))
        .map((r) => r.id),
      userStatus: async (id) => statusOf((await this.query<UserStatusRow>(
        'SELECT (SELECT 1 FROM users WHERE id = $1) AS live, (SELECT 1 FROM removed_users WHERE id = $1) AS reserved', [id]))[0]!),
      ping: () => this.query('SELECT 1', []),
    };
  }

  /** Starts the change feed; part of opening. */
  start(): Promise<void> {
    return this.feed.start();
  }

  isDamage(err: unknown): boolean {
    return isDamage(err);
  }

  describeReadFailure(err: unknown): string {
    return describeReadFailure(err);
  }

  /** A server in recovery (a standby) or set read-only answers reads but commits no write. */
  async writeProblem(): Promise<string | null> {
    const [row] = await this.query<{ ro: string; standby: boolean }>(
      "SELECT current_setting('transaction_read_only') AS ro, pg_is_in_recovery() AS standby", []);
    if (row?.standby) return 'PostgreSQL is a standby in recovery: it takes no writes';
    if (row?.ro === 'on') return 'PostgreSQL sessions are read-only (default_transaction_read_only)';
    return null;
  }

  async close(): Promise<void> {
    // The core has answered every writer (which waited on the feed); the feed stops (which
    // waits on deliveries reading through the pool), then the pool.
    await this.feed.close();
    await this.pool.end();
  }

  /** One batch: apply, NOTIFY its events, commit; see write-ops.ts and change-feed.ts. */
  async runBatch(writes: readonly StoreWrite[]): Promise<BatchResult> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw unavailable('could not reach PostgreSQL', err);
    }
    let failure: Error | undefined;
    let echo: { heard: Promise<void>; cancel: () => void } | undefined;
    try {
      const { replies, now } = await this.side.applyBatch(client, writes);
      // Webhook deliveries commit with the changes they tell of, or not at all.
      const outbox = (await writeOutbox(client, outboxEventsOf(writes, replies, now), now)) > 0;
      const batch = this.feed.batchNumber();
      const payloads = this.feed.encode(batch, eventsOf(writes, replies));
      // Armed before COMMIT: the notification may be heard before COMMIT's answer is.
      if (payloads.length > 0) echo = this.feed.expectEcho(batch);
      for (const payload of payloads) {
        await client.query({ name: 'postbox_notify', text: 'SELECT pg_notify($1, $2)', values: [this.channel, payload] });
      }
      await client.query('COMMIT');
      this.side.committed(now);
      // Writers are answered once this instance's listeners heard the batch from the feed.
      return echo ? { replies, settled: echo.heard, outbox } : { replies, outbox };
    } catch (err) {
      echo?.cancel();
      failure = err instanceof Error ? err : new Error(String(err));
      // Damage does not pass: a retryable 503 would have clients retry it for ever.
      if (isDamage(err)) throw new StorageDamaged(err, 'a write hit damaged data');
      throw unavailable(isTransient(err) ? 'the database is unavailable' : 'storage could not commit', err);
    } finally {
      // A connection that failed inside a transaction is in an unknown state: it is
      // discarded (the server rolls back whatever was open), never lent out again.
      client.release(failure);
    }
  }

  /** Runs a read through the pool as a named statement; `array` answers each row as an array of its columns. */
  private async query<R>(text: string, values: unknown[], array = false): Promise<R[]> {
    const config = { name: this.nameFor(text), text, values, ...(array ? { rowMode: 'array' as const } : {}) };
    return (await this.pool.query(config)).rows as R[];
  }

  /**
   * A statement name per distinct SQL text. Names are per connection and every connection
   * of this pool belongs to this store, so a counter is enough; there are few distinct
   * texts (page queries vary only by which bounds and filters are present).
   */
  private nameFor(text: string): string {
    let name = this.names.get(text);
    if (!name) {
      name = `postbox_r${this.names.size + 1}`;
      this.names.set(text, name);
    }
    return name;
  }

  /** Message texts by id, for change notifications too large to carry them. */
  private async fetchBodies(seqs: number[]): Promise<Map<number, string>> {
    const result = await this.pool.query<{ seq: number; body: string }>({
      name: 'postbox_bodies', text: 'SELECT seq, body FROM messages WHERE seq = ANY($1::bigint[])', values: [seqs],
    });
    return new Map(result.rows.map((r) => [r.seq, r.body]));
  }
}

/** The WHERE of an inbox query, with its values ($1…). */
function inboxFilter(user: string, query: InboxQuery): [string, unknown[]] {
  let where = 'm.to_user = $1';
  const args: unknown[] = [user];
  if (query.from !== undefined) {
    args.push(query.from);
    where += ` AND m.from_user = $${args.length}`;
  }
  if (query.unreadOnly) where += ' AND m.read_at IS NULL';
  return [where, args];
}

/** The webhook events of a batch's operations that succeeded, in order. */
function outboxEventsOf(writes: readonly StoreWrite[], replies: readonly WriteReply[], now: number): OutboxEvent[] {
  const events: OutboxEvent[] = [];
  writes.forEach((write, i) => {
    const reply = replies[i];
    const event = reply?.ok ? outboxEventOf(write, reply.value, now) : undefined;
    if (event) events.push(event);
  });
  return events;
}
