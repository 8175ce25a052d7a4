/**
 * The one renderer of the wire: the canonical bytes of a Message and of a page of them.
 *
 * Every path that puts a message on the wire goes through here or produces exactly these
 * bytes: SQLite stores {@link messageJson}'s text and pages are its concatenation;
 * PostgreSQL renders the same text in SQL (`row_to_json` over columns aliased in this key
 * order, which writes no spaces and escapes as `JSON.stringify` does); live stream events
 * render their message here. The contract suite holds every backend to these bytes.
 *
 * Plain functions over strings, no Node imports: the client and the web app may use it.
 */
import type { Message } from './types.js';

/** The keys of a Message in their wire order: the order of every rendering, in JS or in SQL. */
export const MESSAGE_KEYS = ['id', 'fromUser', 'toUser', 'message', 'sentAt', 'readAt'] as const;

/** A message's id beside its canonical JSON (see {@link messageJson}). */
export type WireRow = readonly [id: string, json: string];

/**
 * The canonical JSON of a message: keys in {@link MESSAGE_KEYS} order, no spaces, strings
 * escaped as `JSON.stringify` escapes them.
 */
export function messageJson(m: Message): string {
  return JSON.stringify({
    id: m.id, fromUser: m.fromUser, toUser: m.toUser, message: m.message, sentAt: m.sentAt, readAt: m.readAt,
  });
}

/**
 * True if the row's message is one `user` sent to someone else, read from the start of its
 * canonical JSON (id, then fromUser, then toUser) without parsing the rest.
 */
export function isSentBy([id, json]: WireRow, user: string): boolean {
  const head = `{"id":${JSON.stringify(id)},"fromUser":${JSON.stringify(user)},"toUser":`;
  return json.startsWith(head) && !json.startsWith(`${JSON.stringify(user)},`, head.length);
}

/** The end of the canonical JSON of an unread message: `readAt` is last and null. */
export const UNREAD_TAIL = 'null}';

/** What marking read puts in place of {@link UNREAD_TAIL}: the time, quoted, and the brace. */
export function readTail(readAt: string): string {
  return `"${readAt}"}`;
}

/** The inside of a JSON array of the rows' messages: their texts comma-joined, nothing rebuilt. */
export function joinedMessages(rows: readonly WireRow[]): string {
  let out = '';
  for (let i = 0; i < rows.length; i++) out += (i === 0 ? '' : ',') + rows[i]![1];
  return out;
}

/** A MessagePage document (`{"messages":[…],"next":…}`) from rows already in wire form. */
export function pageJson(rows: readonly WireRow[], next: string | null): string {
  return `{"messages":[${joinedMessages(rows)}],"next":${next === null ? 'null' : JSON.stringify(next)}}`;
}
