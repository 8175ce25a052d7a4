/**
 * Pages already read, kept until the database changes: the core's cache, for a dialect that
 * can say cheaply whether anything committed since (SQLite's `PRAGMA data_version`).
 *
 * Clients poll: the seed's clients call `GET /get-messages/<user>` again and again, apps
 * refresh a conversation list, and most of those calls find things as they were. Reading the
 * same rows again costs more than all the HTTP work of the request, so the read side keeps
 * each page it read, by query, for as long as nothing has been committed since.
 *
 * "Nothing committed since" is SQLite's own answer, `PRAGMA data_version`: it changes when any
 * other connection commits, this process's write connection or another process on the same file
 * (`postbox import` while the server runs). The owner checks it before each lookup (SQLite
 * asks once per turn of the event loop, and again after each commit of its own) and clears
 * the whole cache when it moved, so a page is never served after a commit that could change
 * it. Pages are kept up to a budget of stored text, the least recently used leaving first.
 * What it hands out is shared by every reader that asks: read-only.
 */
import type { InboxQuery, StoredConversation, WirePage } from './storage.js';

/** What the cache holds: the text of its pages, in UTF-16 code units (about bytes for ASCII). */
export const READ_CACHE_BUDGET = 8 * 1024 * 1024;

interface Entry {
  value: unknown;
  size: number;
}

/** The key of an inbox page; user ids hold no control characters, so NUL cannot be part of one. */
export function inboxKey(user: string, q: InboxQuery): string {
  return `i\0${user}\0${q.after ?? ''}\0${q.before ?? ''}\0${q.limit}\0${q.from ?? ''}\0${q.unreadOnly === true ? 1 : 0}`;
}

/** The key of a page of the conversation list. */
export function conversationsKey(user: string, q: { before?: number; limit: number }): string {
  return `c\0${user}\0${q.before ?? ''}\0${q.limit}`;
}

/** The text a wire page holds. */
export function wirePageSize(page: WirePage): number {
  let size = 0;
  for (const [id, json] of page.rows) size += id.length + json.length;
  return size;
}

/** About the text a page of conversations holds: its messages, and their ids and times. */
export function conversationsSize(list: readonly StoredConversation[]): number {
  let size = 0;
  for (const c of list) size += c.peer.length * 2 + c.lastMessage.fromUser.length + c.lastMessage.toUser.length + c.lastMessage.message.length + 80;
  return size;
}

/** See the module comment. */
export class ReadCache {
  private readonly entries = new Map<string, Entry>();
  private size = 0;
  private version: number | undefined;

  constructor(private readonly budget = READ_CACHE_BUDGET) {}

  /** Tells the cache the database's current data version; a new one empties it. */
  observe(version: number): void {
    if (version === this.version) return;
    this.version = version;
    this.entries.clear();
    this.size = 0;
  }

  /** Whether the last version observed is `version`. */
  isAt(version: number): boolean {
    return this.version === version;
  }

  /** The value kept under `key`, if any. */
  get<T>(key: string): T | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    // Most recently used last, so eviction takes from the front.
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.value as T;
  }

  /** Keeps `value` under `key`; `size` is the text it holds (see the helpers above). */
  set(key: string, value: unknown, size: number): void {
    const total = size + key.length;
    if (total > this.budget) return;
    const old = this.entries.get(key);
    if (old !== undefined) {
      this.entries.delete(key);
      this.size -= old.size;
    }
    this.entries.set(key, { value, size: total });
    this.size += total;
    for (const [k, e] of this.entries) {
      if (this.size <= this.budget) break;
      this.entries.delete(k);
      this.size -= e.size;
    }
  }

  /** Text held, for tests. */
  get heldSize(): number {
    return this.size;
  }
}
