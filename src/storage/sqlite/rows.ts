/**
 * How a message row maps to the domain's Message, shared by the read side and the writer.
 *
 * A row keeps the message's wire JSON ready (see migrations.ts): an object is parsed from it,
 * and the JSON is made once, when the message is stored, with `"readAt":null` at its end.
 */
import type { Message } from '../../protocol/types.js';

/** The columns of `messages` that {@link toMessage} reads. */
export const MESSAGE_COLUMNS = 'seq, json';

/** A row of `messages`, as read for a Message. */
export interface MessageRow {
  seq: number;
  json: string;
}

/** The end of the wire JSON of an unread message. */
const UNREAD_TAIL = 'null}';

/** A stored row as the wire shape. */
export function toMessage(row: MessageRow): Message {
  return JSON.parse(row.json) as Message;
}

/** The wire JSON of a message, as stored: key order is the contract's. */
export function messageJson(m: Message): string {
  return JSON.stringify({
    id: m.id, fromUser: m.fromUser, toUser: m.toUser, message: m.message, sentAt: m.sentAt, readAt: m.readAt,
  });
}

/** What marking read puts in place of the trailing `null}`: the time, quoted, and the brace. */
export function readTail(readAt: string): string {
  return `"${readAt}"}`;
}

/** The SQL that turns an unread message's stored JSON into its read form. */
export const MARK_READ_JSON = `substr(json, 1, length(json) - ${UNREAD_TAIL.length}) || ?`;

/**
 * Settings every Postbox connection shares. A 32 MiB page cache per connection (SQLite's
 * default is 2 MiB) keeps the hot part of the indexes in memory as the store grows to
 * millions of messages, at a bounded cost.
 */
export const CONNECTION_PRAGMAS = ['busy_timeout = 5000', 'foreign_keys = ON', 'cache_size = -32768'] as const;
