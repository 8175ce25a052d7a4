/**
 * The PostgreSQL backend: reads straight from a connection pool, writes through a
 * group-commit queue (write-ops.ts: one transaction per batch under the store's write lock,
 * which makes ids commit-ordered), and events through LISTEN/NOTIFY (change-feed.ts), so
 * that any number of instances on one database behave as one SQLite store.
 *
 * Every failure to reach the database surfaces as `storage_unavailable` (a 503 with
 * Retry-After), and nothing needs a restart when the database comes back: the pool opens
 * new connections on demand and the change feed reconnects by itself.
 */
import pg from 'pg';
import type { Message } from '../../protocol/types.js';
import { importInChunks, type ImportCounts } from '../import-check.js';
import type {
  ExportRecord, IdempotencyClaim, InboxQuery, NewMessage, PageQuery, ReadOutcome, ReadSelector,
  SendOutcome, Storage, StoredConversation, TokenOwner, StoredPage, StoredUser, StoreEvent, StoreListener, StorageLogger, WirePage,
} from '../storage.js';
import { ChangeFeed, channelFor } from './change-feed.js';
import { isTransient, readFailure, unavailable } from './failures.js';
import { GroupCommit, type BatchResult } from './group-commit.js';
import { migrate } from './migrations.js';
import { MESSAGE_COLUMNS, PG_TYPES, WIRE_JSON, toMessage, type MessageRow } from './rows.js';
import { WriteSide, eventsOf, type WriteOp, type WriteReply, type WriteResults } from './write-ops.js';
import { outboxEventOf, type OutboxEvent } from '../webhooks.js';
import { PgWebhookStore, writeOutbox } from './webhooks.js';

/** The WHERE of an inbox query, with its values ($1…). */
function inboxFilter(user: string, query: InboxQuery): [string[], unknown[]] {
  const where = ['to_user = $1'];
  const args: unknown[] = [user];
  if (query.from !== undefined) {
    args.push(query.from);
    where.push(`from_user = $${args.length}`);
  }
  if (query.unreadOnly) where.push('read_at IS NULL');
  return [where, args];
}

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

/** How many rows an export reads at a time. */
const EXPORT_CHUNK = 1000;
/** How many records an import commits at a time. */
const IMPORT_CHUNK = 1000;

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
    const storage = new PostgresStorage(pool, options, facts);
    await storage.start();
    return storage;
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

/** See the module comment. */
export class PostgresStorage implements Storage {
  readonly kind = 'postgres';
  private readonly pool: pg.Pool;
  private readonly side: WriteSide;
  private readonly writer: GroupCommit;
  private readonly feed: ChangeFeed;
  private readonly channel: string;
  private readonly listeners = new Set<StoreListener>();
  private readonly names = new Map<string, string>();
  private readonly logger: StorageLogger | undefined;
  private closing: Promise<void> | undefined;
  /** Webhook endpoints and the delivery outbox (see webhooks.ts). */
  readonly webhooks: PgWebhookStore;

  /** Use {@link openPostgresStorage}, which migrates first. */
  constructor(pool: pg.Pool, options: PostgresOptions, facts: { schema: string; oid: number }) {
    this.pool = pool;
    this.webhooks = new PgWebhookStore(pool);
    this.logger = options.logger;
    this.channel = channelFor(facts.schema);
    this.side = new WriteSide((WRITE_LOCK_CLASS << 32n) | BigInt(facts.oid), options.durability);
    this.writer = new GroupCommit((ops) => this.runBatch(ops));
    this.feed = new ChangeFeed({
      client: connectionConfig(options),
      channel: this.channel,
      fetchBodies: (seqs) => this.fetchBodies(seqs),
      emit: (events) => this.emit(events),
      logger: options.logger,
      reconnectMinMs: options.reconnectMinMs,
      reconnectMaxMs: options.reconnectMaxMs,
      heartbeatMs: options.heartbeatMs,
    });
  }

  /** Starts the change feed; part of opening. */
  start(): Promise<void> {
    return this.feed.start();
  }

  send(message: NewMessage, idempotency?: IdempotencyClaim): Promise<SendOutcome> {
    return this.write({ op: 'send', message, key: idempotency?.key, fingerprint: idempotency?.fingerprint });
  }

  async getMessage(seq: number): Promise<Message | null> {
    const rows = await this.rows<MessageRow>(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE seq = $1`, [seq]);
    return rows[0] ? toMessage(rows[0]) : null;
  }

  deleteMessage(seq: number): Promise<Message | null> {
    return this.write({ op: 'delete', seq });
  }

  inbox(user: string, query: InboxQuery): Promise<StoredPage> {
    const [where, args] = inboxFilter(user, query);
    return this.page(where, args, query);
  }

  async inboxWire(user: string, query: InboxQuery): Promise<WirePage> {
    const [where, args] = inboxFilter(user, query);
    const { bounds, order, limit } = this.window(args, query);
    const sql = `SELECT seq::text AS id, ${WIRE_JSON} AS json FROM messages WHERE ${where.join(' AND ')}${bounds} ` +
      `ORDER BY seq ${order} LIMIT ${limit}`;
    const rows = (await this.rows<{ id: string; json: string }>(sql, args)).map((r) => [r.id, r.json] as [string, string]);
    const more = rows.length > query.limit;
    if (more) rows.pop();
    if (order === 'DESC') rows.reverse();
    return { rows, more };
  }

  sent(user: string, query: PageQuery): Promise<StoredPage> {
    return this.page(['from_user = $1'], [user], query);
  }

  async conversation(user: string, peer: string, query: PageQuery): Promise<StoredPage> {
    if (user === peer) return this.page(['to_user = $1', 'from_user = $1'], [user], query);
    // Each direction is a range of the (to_user, from_user, seq) index; merging the two
    // bounded ranges keeps the cost at O(page) however long the history.
    const args: unknown[] = [user, peer];
    const { bounds, order, limit } = this.window(args, query);
    const side = (to: string, from: string) =>
      `(SELECT ${MESSAGE_COLUMNS} FROM messages WHERE to_user = ${to} AND from_user = ${from}${bounds} ORDER BY seq ${order} LIMIT ${limit})`;
    const sql = `SELECT * FROM (${side('$1', '$2')} UNION ALL ${side('$2', '$1')}) AS both_ways ORDER BY seq ${order} LIMIT ${limit}`;
    return this.finishPage(await this.rows<MessageRow>(sql, args), query);
  }

  async conversations(user: string, query: { before?: number; limit: number }): Promise<{ conversations: StoredConversation[]; more: boolean }> {
    const rows = await this.rows<MessageRow & { peer: string; unread: number }>(
      `SELECT c.peer, c.unread, m.seq, m.from_user, m.to_user, m.body, m.sent_at, m.read_at
       FROM conversations c JOIN messages m ON m.seq = c.last_seq
       WHERE c.owner = $1 AND c.last_seq < $2 ORDER BY c.last_seq DESC LIMIT $3`,
      [user, query.before ?? Number.MAX_SAFE_INTEGER, query.limit + 1],
    );
    return {
      conversations: rows.slice(0, query.limit).map((r) => ({ peer: r.peer, unread: r.unread, lastMessage: toMessage(r) })),
      more: rows.length > query.limit,
    };
  }

  markRead(user: string, which: ReadSelector): Promise<ReadOutcome> {
    return this.write({ op: 'markRead', user, ...which });
  }

  createUser(id: string, tokenHash: string): Promise<boolean> {
    return this.write({ op: 'createUser', id, tokenHash });
  }

  async listUsers(): Promise<StoredUser[]> {
    const rows = await this.rows<{ id: string; created_at: number }>('SELECT id, created_at FROM users ORDER BY id', []);
    return rows.map((u) => ({ id: u.id, createdAt: new Date(u.created_at).toISOString() }));
  }

  deleteUser(id: string): Promise<boolean> {
    return this.write({ op: 'deleteUser', id });
  }

  addToken(user: string, tokenHash: string, scopes?: string): Promise<boolean> {
    return this.write({ op: 'addToken', user, tokenHash, ...(scopes === undefined ? {} : { scopes }) });
  }

  revokeTokens(user: string): Promise<number> {
    return this.write({ op: 'revokeTokens', user });
  }

  async userForToken(tokenHash: string): Promise<string | null> {
    const rows = await this.rows<{ user_id: string }>('SELECT user_id FROM tokens WHERE hash = $1', [tokenHash]);
    return rows[0]?.user_id ?? null;
  }

  async tokenOwner(tokenHash: string): Promise<TokenOwner | null> {
    const rows = await this.rows<TokenOwner>('SELECT user_id AS user, scopes FROM tokens WHERE hash = $1', [tokenHash]);
    return rows[0] ?? null;
  }

  async *exportAll(): AsyncIterable<ExportRecord> {
    for (const u of await this.listUsers()) yield { type: 'user', ...u };
    const tokens = await this.rows<{ hash: string; user_id: string; created_at: number; scopes: string }>(
      'SELECT hash, user_id, created_at, scopes FROM tokens ORDER BY user_id, hash', [],
    );
    for (const t of tokens) {
      yield { type: 'token', user: t.user_id, hash: t.hash, createdAt: new Date(t.created_at).toISOString(), ...(t.scopes === 'full' ? {} : { scopes: t.scopes }) };
    }
    let after = 0;
    for (;;) {
      const rows = await this.rows<MessageRow>(
        `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE seq > $1 ORDER BY seq LIMIT $2`, [after, EXPORT_CHUNK],
      );
      for (const r of rows) yield { type: 'message', message: toMessage(r) };
      if (rows.length < EXPORT_CHUNK) return;
      after = rows[rows.length - 1]!.seq;
    }
  }

  importAll(records: AsyncIterable<ExportRecord>): Promise<ImportCounts> {
    return importInChunks(records, IMPORT_CHUNK, (chunk) => this.write({ op: 'import', records: chunk }));
  }

  async ping(): Promise<void> {
    await this.rows('SELECT 1', []);
  }

  onEvents(listener: StoreListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      // Pending writes finish and are answered (which waits on the feed), then the feed
      // stops (which waits on deliveries reading through the pool), then the pool.
      await this.writer.close();
      await this.feed.close();
      await this.pool.end();
    })();
    return this.closing;
  }

  private write<K extends WriteOp['op']>(op: Extract<WriteOp, { op: K }>): Promise<WriteResults[K]> {
    return this.writer.submit(op);
  }

  /** One batch: apply, NOTIFY its events, commit; see write-ops.ts and change-feed.ts. */
  private async runBatch(ops: readonly WriteOp[]): Promise<BatchResult> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw unavailable('could not reach PostgreSQL', err);
    }
    let failure: Error | undefined;
    let echo: { heard: Promise<void>; cancel: () => void } | undefined;
    try {
      const { replies, now } = await this.side.applyBatch(client, ops);
      // Webhook deliveries commit with the changes they tell of, or not at all.
      await writeOutbox(client, outboxEventsOf(ops, replies, now), now);
      const batch = this.feed.batchNumber();
      const payloads = this.feed.encode(batch, eventsOf(ops, replies));
      // Armed before COMMIT: the notification may be heard before COMMIT's answer is.
      if (payloads.length > 0) echo = this.feed.expectEcho(batch);
      for (const payload of payloads) {
        await client.query({ name: 'postbox_notify', text: 'SELECT pg_notify($1, $2)', values: [this.channel, payload] });
      }
      await client.query('COMMIT');
      this.side.committed(now);
      return { replies, told: echo?.heard ?? Promise.resolve() };
    } catch (err) {
      echo?.cancel();
      failure = err instanceof Error ? err : new Error(String(err));
      throw unavailable(isTransient(err) ? 'the database is unavailable' : 'storage could not commit', err);
    } finally {
      // A connection that failed inside a transaction is in an unknown state: it is
      // discarded (the server rolls back whatever was open), never lent out again.
      client.release(failure);
    }
  }

  /** Runs a read through the pool, as a named statement, with every failure a 503. */
  private async rows<R extends object>(text: string, values: unknown[]): Promise<R[]> {
    if (this.closing) throw unavailable('storage is closed');
    try {
      return (await this.pool.query<R>({ name: this.nameFor(text), text, values })).rows;
    } catch (err) {
      throw readFailure(err);
    }
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

  private direction(query: PageQuery): 'ASC' | 'DESC' {
    return query.after === undefined && query.before !== undefined ? 'DESC' : 'ASC';
  }

  /** The bounds, order and limit of a page over `seq`, one more row than the page to learn `more`. */
  private window(args: unknown[], query: PageQuery): { bounds: string; order: 'ASC' | 'DESC'; limit: string } {
    let bounds = '';
    if (query.after !== undefined) {
      args.push(query.after);
      bounds += ` AND seq > $${args.length}`;
    }
    if (query.before !== undefined && query.before !== Infinity) {
      args.push(query.before);
      bounds += ` AND seq < $${args.length}`;
    }
    args.push(query.limit + 1);
    return { bounds, order: this.direction(query), limit: `$${args.length}` };
  }

  private async page(where: string[], whereArgs: unknown[], query: PageQuery): Promise<StoredPage> {
    const args = [...whereArgs];
    const { bounds, order, limit } = this.window(args, query);
    const sql = `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE ${where.join(' AND ')}${bounds} ORDER BY seq ${order} LIMIT ${limit}`;
    return this.finishPage(await this.rows<MessageRow>(sql, args), query);
  }

  private finishPage(rows: MessageRow[], query: PageQuery): StoredPage {
    const more = rows.length > query.limit;
    const kept = more ? rows.slice(0, query.limit) : rows;
    if (this.direction(query) === 'DESC') kept.reverse();
    return { messages: kept.map(toMessage), more };
  }

  /** Message texts by id, for change notifications too large to carry them. */
  private async fetchBodies(seqs: number[]): Promise<Map<number, string>> {
    const result = await this.pool.query<{ seq: number; body: string }>({
      name: 'postbox_bodies', text: 'SELECT seq, body FROM messages WHERE seq = ANY($1::bigint[])', values: [seqs],
    });
    return new Map(result.rows.map((r) => [r.seq, r.body]));
  }

  private emit(events: readonly StoreEvent[]): void {
    for (const listener of this.listeners) {
      try {
        listener(events);
      } catch (err) {
        // One broken listener must not deafen the others or stall the feed.
        this.logger?.error({ err }, 'a storage event listener failed');
      }
    }
  }
}

/** The webhook events of a batch's operations that succeeded, in order. */
function outboxEventsOf(ops: readonly WriteOp[], replies: readonly WriteReply[], now: number): OutboxEvent[] {
  const events: OutboxEvent[] = [];
  ops.forEach((op, i) => {
    const reply = replies[i];
    const event = reply?.ok ? outboxEventOf(op, reply.value, now) : undefined;
    if (event) events.push(event);
  });
  return events;
}
