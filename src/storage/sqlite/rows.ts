/**
 * How SQLite keeps a message: its canonical wire JSON (protocol/wire.ts), made once when it
 * is stored, with `"readAt":null` at its end until marking read rewrites that tail.
 */
import { UNREAD_TAIL } from '../../protocol/wire.js';

/** The columns of a page row: the id as text beside the JSON, so the driver's raw row is the wire row. */
export const WIRE_COLUMNS = 'CAST(seq AS TEXT), json';

/** The SQL that turns an unread message's stored JSON into its read form (`?` is `readTail(readAt)`). */
export const MARK_READ_JSON = `substr(json, 1, length(json) - ${UNREAD_TAIL.length}) || ?`;

/**
 * Settings every Postbox connection shares. A 32 MiB page cache per connection (SQLite's
 * default is 2 MiB) keeps the hot part of the indexes in memory as the store grows to
 * millions of messages, at a bounded cost.
 */
export const CONNECTION_PRAGMAS = ['busy_timeout = 5000', 'foreign_keys = ON', 'cache_size = -32768'] as const;

/**
 * A message's sentAt as SQL, spelled exactly as migration 4's `messages_age` index spells it,
 * so that SQLite answers age queries from that index.
 */
export const SENT_AT = "json_extract(json, '$.sentAt')";
