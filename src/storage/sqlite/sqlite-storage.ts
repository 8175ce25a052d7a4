/**
 * The embedded SQLite backend: reads on the main thread's own connection (better-sqlite3 is
 * synchronous and a hot page read takes microseconds), writes through the group-commit
 * writer thread. WAL mode lets the two work at once.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Message } from '../../protocol/types.js';
import { AppError } from '../../errors.js';
import { importInChunks, type ImportCounts } from '../import-check.js';
import type {
  ExportRecord, IdempotencyClaim, InboxQuery, NewMessage, PageQuery, ReadOutcome, ReadSelector,
  SendOutcome, Storage, StoredConversation, TokenOwner, StoredPage, StoredUser, StoreEvent, StoreListener, WirePage, StorageLogger,
} from '../storage.js';
import { eventOf } from '../writes.js';
import { GroupCommitWriter } from './group-commit.js';
import { migrate } from './migrations.js';
import { conversationsKey, conversationsSize, inboxKey, ReadCache, wirePageSize } from './read-cache.js';
import { CONNECTION_PRAGMAS, MESSAGE_COLUMNS, toMessage, type MessageRow } from './rows.js';
import { SqliteWebhookStore } from './webhooks.js';
import type { WriteOp, WriteResults } from './write-ops.js';

/** The WHERE of an inbox query, with its values. */
function inboxFilter(user: string, query: InboxQuery): [string[], unknown[]] {
  const where = ['to_user = ?'];
  const args: unknown[] = [user];
  if (query.from !== undefined) {
    where.push('from_user = ?');
    args.push(query.from);
  }
  if (query.unreadOnly) where.push('read_at IS NULL');
  return [where, args];
}

/**
 * Whether a page lies in the middle of a longer read: a cursor was given and more lies
 * beyond. A reader walking a long history (the legacy inbox streams one in chunks) reads
 * each such page once, so the read cache does not keep them; the first page, the last, and
 * a poll at the end are kept.
 */
function walking(query: { after?: number; before?: number }, more: boolean): boolean {
  return more && (query.after !== undefined || (query.before !== undefined && query.before !== Infinity));
}

/** Options for {@link openSqliteStorage}. */
export interface SqliteOptions {
  /** The database file; its directory is created if missing. */
  path: string;
  /** `fsync`: a commit is on disk before it is answered; `relaxed`: it survives a process crash. */
  durability: 'fsync' | 'relaxed';
  /** Told the SQL (with its values) of each read, for tracing and for query-plan checks. */
  onQuery?: (sql: string) => void;
  /** Where a listener that throws is reported. */
  logger?: StorageLogger;
}

/** How many rows an export reads at a time. */
const EXPORT_CHUNK = 1000;
/** How many records an import commits at a time. */
const IMPORT_CHUNK = 1000;


/** Opens (creating and migrating if needed) a SQLite store. */
export function openSqliteStorage(options: SqliteOptions): SqliteStorage {
  if (options.path !== ':memory:') mkdirSync(dirname(options.path), { recursive: true });
  const db = new Database(options.path, options.onQuery ? { verbose: (sql) => options.onQuery?.(String(sql)) } : {});
  try {
    for (const p of CONNECTION_PRAGMAS) db.pragma(p);
    db.pragma('journal_mode = WAL');
    // No mmap: mapping the file made a 1,000-message read a quarter faster, but every page
    // a long read touched then counted in the server's RSS (up to the map's size), and the
    // read cache now answers repeated reads without touching the file at all.
    migrate(db);
  } catch (err) {
    db.close();
    throw err;
  }
  return new SqliteStorage(db, options);
}

/** Applies pending migrations to a SQLite file and answers the versions applied. */
export function migrateSqlite(path: string): number[] {
  mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  try {
    for (const p of CONNECTION_PRAGMAS) db.pragma(p);
    db.pragma('journal_mode = WAL');
    return migrate(db);
  } finally {
    db.close();
  }
}

/** See the module comment. */
export class SqliteStorage implements Storage {
  readonly kind = 'sqlite';
  private readonly db: Database.Database;
  private readonly writer: GroupCommitWriter;
  private readonly listeners = new Set<StoreListener>();
  private readonly statements = new Map<string, Database.Statement>();
  private readonly logger: StorageLogger | undefined;
  /** Pages read since the last commit (see read-cache.ts). */
  private readonly cache = new ReadCache();
  /** SQLite's count of commits by other connections, the cache's guard. */
  private readonly dataVersion: Database.Statement;
  private closed = false;
  /** Webhook endpoints and the delivery outbox (see webhooks.ts). */
  readonly webhooks: SqliteWebhookStore;

  constructor(db: Database.Database, options: SqliteOptions) {
    this.webhooks = new SqliteWebhookStore(
      (fn) => this.read(() => fn(this.db)),
      (write) => this.write({ op: 'webhook', write }),
    );
    this.db = db;
    this.logger = options.logger;
    this.dataVersion = db.prepare('PRAGMA data_version').pluck();
    this.writer = new GroupCommitWriter(
      { path: options.path, synchronous: options.durability === 'fsync' ? 'FULL' : 'NORMAL' },
      (ops, values) => this.committed(ops, values),
    );
  }

  send(message: NewMessage, idempotency?: IdempotencyClaim): Promise<SendOutcome> {
    return this.write({ op: 'send', message, key: idempotency?.key, fingerprint: idempotency?.fingerprint });
  }

  getMessage(seq: number): Promise<Message | null> {
    return this.read(() => {
      const row = this.prepared(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE seq = ?`).get(seq) as MessageRow | undefined;
      return row ? toMessage(row) : null;
    });
  }

  deleteMessage(seq: number): Promise<Message | null> {
    return this.write({ op: 'delete', seq });
  }

  inbox(user: string, query: InboxQuery): Promise<StoredPage> {
    const [where, args] = inboxFilter(user, query);
    return this.read(() => this.page(where, args, query));
  }

  inboxWire(user: string, query: InboxQuery): Promise<WirePage> {
    return this.cachedRead(inboxKey(user, query), (page) => (walking(query, page.more) ? undefined : wirePageSize(page)), () => {
      const [where, args] = inboxFilter(user, query);
      const { sql, args: windowArgs } = this.window(where, query, 'seq, json');
      // Raw rows: no object per message, just the stored JSON beside its id.
      const rows = this.prepared(sql, true).all(...args, ...windowArgs) as [number, string][];
      const more = rows.length > query.limit;
      if (more) rows.pop();
      if (this.direction(query) === 'DESC') rows.reverse();
      return { rows: rows.map(([seq, json]) => [String(seq), json] as const), more };
    });
  }

  sent(user: string, query: PageQuery): Promise<StoredPage> {
    return this.read(() => this.page(['from_user = ?'], [user], query));
  }

  conversation(user: string, peer: string, query: PageQuery): Promise<StoredPage> {
    return this.read(() => {
      if (user === peer) return this.page(['to_user = ?', 'from_user = ?'], [user, user], query);
      // Each direction is a range of the (to_user, from_user, seq) index; merging the two
      // bounded ranges keeps the cost at O(page) however long the history.
      const { sql, args } = this.window(['to_user = ?', 'from_user = ?'], query);
      const both = `SELECT * FROM (${sql}) UNION ALL SELECT * FROM (${sql})`;
      const dir = this.direction(query);
      return this.finishPage(
        this.prepared(`SELECT * FROM (${both}) ORDER BY seq ${dir} LIMIT ?`).all(
          user, peer, ...args, peer, user, ...args, query.limit + 1,
        ) as MessageRow[],
        query,
      );
    });
  }

  conversations(user: string, query: { before?: number; limit: number }): Promise<{ conversations: StoredConversation[]; more: boolean }> {
    return this.cachedRead(conversationsKey(user, query), (page) => (walking(query, page.more) ? undefined : conversationsSize(page.conversations)), () => {
      const before = query.before ?? Number.MAX_SAFE_INTEGER;
      const rows = this.prepared(
        `SELECT c.peer, c.unread, m.seq, m.json
         FROM conversations c JOIN messages m ON m.seq = c.last_seq
         WHERE c.owner = ? AND c.last_seq < ? ORDER BY c.last_seq DESC LIMIT ?`,
      ).all(user, before, query.limit + 1) as (MessageRow & { peer: string; unread: number })[];
      const more = rows.length > query.limit;
      return {
        conversations: rows.slice(0, query.limit).map((r) => ({ peer: r.peer, unread: r.unread, lastMessage: toMessage(r) })),
        more,
      };
    });
  }

  markRead(user: string, which: ReadSelector): Promise<ReadOutcome> {
    return this.write({ op: 'markRead', user, ...which });
  }

  createUser(id: string, tokenHash: string): Promise<boolean> {
    return this.write({ op: 'createUser', id, tokenHash });
  }

  listUsers(): Promise<StoredUser[]> {
    return this.read(() =>
      (this.prepared('SELECT id, created_at FROM users ORDER BY id').all() as { id: string; created_at: number }[])
        .map((u) => ({ id: u.id, createdAt: new Date(u.created_at).toISOString() })),
    );
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

  userForToken(tokenHash: string): Promise<string | null> {
    return this.read(() =>
      (this.prepared('SELECT user_id FROM tokens WHERE hash = ?').pluck().get(tokenHash) as string | undefined) ?? null,
    );
  }

  tokenOwner(tokenHash: string): Promise<TokenOwner | null> {
    return this.read(() =>
      (this.prepared('SELECT user_id AS user, scopes FROM tokens WHERE hash = ?').get(tokenHash) as TokenOwner | undefined) ?? null,
    );
  }

  async *exportAll(): AsyncIterable<ExportRecord> {
    for (const u of await this.listUsers()) yield { type: 'user', ...u };
    const tokens = this.read(() =>
      this.prepared('SELECT hash, user_id, created_at, scopes FROM tokens ORDER BY user_id, hash').all() as
        { hash: string; user_id: string; created_at: number; scopes: string }[],
    );
    for (const t of await tokens) {
      yield { type: 'token', user: t.user_id, hash: t.hash, createdAt: new Date(t.created_at).toISOString(), ...(t.scopes === 'full' ? {} : { scopes: t.scopes }) };
    }
    let after = 0;
    for (;;) {
      const rows = await this.read(() =>
        this.prepared(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE seq > ? ORDER BY seq LIMIT ?`)
          .all(after, EXPORT_CHUNK) as MessageRow[],
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
    await this.read(() => this.prepared('SELECT 1').get());
    await this.write({ op: 'ping' });
  }

  onEvents(listener: StoreListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writer.close();
    this.db.close();
  }

  private write<K extends WriteOp['op']>(op: Extract<WriteOp, { op: K }>): Promise<WriteResults[K]> {
    return this.writer.submit(op);
  }

  /** Runs a synchronous read, turning driver failures into a 503 rather than a leak of internals. */
  private read<T>(fn: () => T): Promise<T> {
    if (this.closed) return Promise.reject(new AppError('storage_unavailable', 'storage is closed', { headers: { 'Retry-After': '1' } }));
    try {
      return Promise.resolve(fn());
    } catch (err) {
      return Promise.reject(new AppError('storage_unavailable', 'storage could not be read', { headers: { 'Retry-After': '1' }, cause: err }));
    }
  }

  /**
   * A read kept in the cache until the next commit by any connection (see read-cache.ts).
   * `sizeOf` answers the text a value holds, or undefined for one not worth keeping.
   */
  private cachedRead<T>(key: string, sizeOf: (value: T) => number | undefined, fn: () => T): Promise<T> {
    return this.read(() => {
      this.cache.observe(this.dataVersion.get() as number);
      const kept = this.cache.get<T>(key);
      if (kept !== undefined) return kept;
      const value = fn();
      const size = sizeOf(value);
      if (size !== undefined) this.cache.set(key, value, size);
      return value;
    });
  }

  private prepared(sql: string, raw = false): Database.Statement {
    const key = raw ? `raw:${sql}` : sql;
    let s = this.statements.get(key);
    if (!s) {
      s = this.db.prepare(sql);
      if (raw) s.raw(true);
      this.statements.set(key, s);
    }
    return s;
  }

  private direction(query: PageQuery): 'ASC' | 'DESC' {
    return query.after === undefined && query.before !== undefined ? 'DESC' : 'ASC';
  }

  /** The bounds and order of a page as SQL over `seq`, one more row than the page to learn `more`. */
  private window(where: string[], query: PageQuery, columns = MESSAGE_COLUMNS): { sql: string; args: unknown[] } {
    const cond = [...where];
    const args: unknown[] = [];
    if (query.after !== undefined) {
      cond.push('seq > ?');
      args.push(query.after);
    }
    if (query.before !== undefined && query.before !== Infinity) {
      cond.push('seq < ?');
      args.push(query.before);
    }
    args.push(query.limit + 1);
    return {
      sql: `SELECT ${columns} FROM messages WHERE ${cond.join(' AND ')} ORDER BY seq ${this.direction(query)} LIMIT ?`,
      args,
    };
  }

  private page(where: string[], whereArgs: unknown[], query: PageQuery): StoredPage {
    const { sql, args } = this.window(where, query);
    return this.finishPage(this.prepared(sql).all(...whereArgs, ...args) as MessageRow[], query);
  }

  private finishPage(rows: MessageRow[], query: PageQuery): StoredPage {
    const more = rows.length > query.limit;
    const kept = more ? rows.slice(0, query.limit) : rows;
    if (this.direction(query) === 'DESC') kept.reverse();
    return { messages: kept.map(toMessage), more };
  }

  /** Turns a committed batch into events, in commit order. */
  private committed(ops: readonly WriteOp[], values: readonly unknown[]): void {
    if (this.listeners.size === 0) return;
    const events: StoreEvent[] = [];
    ops.forEach((op, i) => {
      const v = values[i];
      const event = v === undefined || op.op === 'ping' || op.op === 'webhook' ? undefined : eventOf(op, v);
      if (event) events.push(event);
    });
    if (events.length === 0) return;
    for (const l of this.listeners) {
      try {
        l(events);
      } catch (err) {
        // This runs inside the writer's commit callback: an error escaping it would leave
        // the batch's writers unanswered and the writer stalled for good. One broken
        // listener must cost only its own events.
        this.logger?.error({ err }, 'a storage event listener failed');
      }
    }
  }
}
