/**
 * Paging, once for every backend: how a {@link PageQuery} becomes a window over message
 * sequence numbers, and how the rows a dialect read through that window become a page.
 *
 * A dialect turns a {@link PageWindow} into its own SQL (`seq > after AND seq < before ORDER
 * BY seq <order> LIMIT <fetch>`) and hands back the rows as read; {@link finishPage} does
 * the rest. Fetching one row more than the page is how `more` is learnt without a count.
 */
import type { PageQuery, WirePage, WireRow } from './storage.js';

/** A page query as bounds over `seq`, an order, and how many rows to read. */
export interface PageWindow {
  /** Only sequence numbers above this. */
  after?: number;
  /** Only sequence numbers below this (never `Infinity`: that is no bound). */
  before?: number;
  /** Backward pages read newest first, then are turned around. */
  order: 'ASC' | 'DESC';
  /** The page's limit plus one. */
  fetch: number;
}

/**
 * A window as SQL: ` AND seq > … AND seq < … ORDER BY seq <order> LIMIT …`, to follow a
 * WHERE. Its values are pushed onto `args`; `param(n)` writes the n-th placeholder (`?` for
 * SQLite, `$n` for PostgreSQL).
 */
export function windowSql(window: PageWindow, args: unknown[], param: (n: number) => string): string {
  let sql = '';
  if (window.after !== undefined) {
    args.push(window.after);
    sql += ` AND seq > ${param(args.length)}`;
  }
  if (window.before !== undefined) {
    args.push(window.before);
    sql += ` AND seq < ${param(args.length)}`;
  }
  args.push(window.fetch);
  return `${sql} ORDER BY seq ${window.order} LIMIT ${param(args.length)}`;
}

/** The window of a query: with `after` forward from it; with only `before` backward; with neither forward from the oldest. */
export function pageWindow(query: PageQuery): PageWindow {
  const window: PageWindow = { order: isBackward(query) ? 'DESC' : 'ASC', fetch: query.limit + 1 };
  if (query.after !== undefined) window.after = query.after;
  if (query.before !== undefined && query.before !== Infinity) window.before = query.before;
  return window;
}

/** True for a query that pages backward (from `before`, or from the latest). */
export function isBackward(query: { after?: number; before?: number }): boolean {
  return query.after === undefined && query.before !== undefined;
}

/**
 * The page from rows read through {@link pageWindow}: at most `limit` rows, oldest first,
 * and whether more lie beyond. Takes ownership of `rows` (it may shorten and reverse it).
 */
export function finishPage(rows: WireRow[], query: PageQuery): WirePage {
  const more = rows.length > query.limit;
  if (more) rows.length = query.limit;
  if (isBackward(query)) rows.reverse();
  return { rows, more };
}

/** The cursor of the page after `page` in the same direction, or null when there is nothing further now. */
export function nextCursor(page: WirePage, query: { after?: number; before?: number }): string | null {
  const { rows, more } = page;
  if (!more || rows.length === 0) return null;
  return isBackward(query) ? rows[0]![0] : rows[rows.length - 1]![0];
}

/**
 * Whether a page lies in the middle of a longer read: a cursor was given and more lies
 * beyond. A reader walking a long history (the legacy inbox reads one in chunks) reads each
 * such page once, so a read cache need not keep them; the first page, the last, and a poll
 * at the end are worth keeping.
 */
export function isMiddlePage(query: { after?: number; before?: number }, more: boolean): boolean {
  return more && (query.after !== undefined || (query.before !== undefined && query.before !== Infinity));
}
