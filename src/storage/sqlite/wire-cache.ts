/**
 * Wire pages already read, kept until the database changes.
 *
 * Clients poll: the seed's clients call `GET /get-messages/<user>` again and again, and most
 * of those calls find the inbox as it was. Reading the same rows again costs more than all
 * the HTTP work of the request, so the read side keeps each page it read, by query, for as
 * long as nothing has been committed since.
 *
 * "Nothing committed since" is SQLite's own answer, `PRAGMA data_version`: it changes when any
 * other connection commits, this process's writer thread or another process on the same file
 * (`postbox import` while the server runs). The owner checks it before each lookup and clears
 * the whole cache when it moved, so a page is never served after a commit that could change
 * it. Pages are kept up to a budget of stored text, the least recently used leaving first.
 */
import type { InboxQuery, WirePage } from '../storage.js';

/** What the cache holds: the text of its pages, in UTF-16 code units (about bytes for ASCII). */
export const WIRE_CACHE_BUDGET = 8 * 1024 * 1024;

interface Entry {
  page: WirePage;
  size: number;
}

/** See the module comment. */
export class WireCache {
  private readonly entries = new Map<string, Entry>();
  private size = 0;
  private version: number | undefined;

  constructor(private readonly budget = WIRE_CACHE_BUDGET) {}

  /** The key of a query; user ids hold no control characters, so NUL cannot be part of one. */
  static key(user: string, q: InboxQuery): string {
    return `${user}\0${q.after ?? ''}\0${q.before ?? ''}\0${q.limit}\0${q.from ?? ''}\0${q.unreadOnly === true ? 1 : 0}`;
  }

  /** Tells the cache the database's current data version; a new one empties it. */
  observe(version: number): void {
    if (version === this.version) return;
    this.version = version;
    this.entries.clear();
    this.size = 0;
  }

  get(key: string): WirePage | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    // Most recently used last, so eviction takes from the front.
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.page;
  }

  set(key: string, page: WirePage): void {
    let size = key.length;
    for (const [id, json] of page.rows) size += id.length + json.length;
    if (size > this.budget) return;
    const old = this.entries.get(key);
    if (old !== undefined) {
      this.entries.delete(key);
      this.size -= old.size;
    }
    this.entries.set(key, { page, size });
    this.size += size;
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
