/**
 * How a message row maps to the domain's Message, shared by the read side and the writer.
 */
import type { Message } from '../../protocol/types.js';

/** The columns of `messages`, in the order {@link toMessage} expects. */
export const MESSAGE_COLUMNS = 'seq, from_user, to_user, body, sent_at, read_at';

/** A row of `messages`. */
export interface MessageRow {
  seq: number;
  from_user: string;
  to_user: string;
  body: string;
  sent_at: number;
  read_at: number | null;
}

/** A stored row as the wire shape. */
export function toMessage(row: MessageRow): Message {
  return {
    id: String(row.seq),
    fromUser: row.from_user,
    toUser: row.to_user,
    message: row.body,
    sentAt: new Date(row.sent_at).toISOString(),
    readAt: row.read_at === null ? null : new Date(row.read_at).toISOString(),
  };
}

/** Opens a database with the settings every Postbox connection shares. */
export const CONNECTION_PRAGMAS = ['busy_timeout = 5000', 'foreign_keys = ON'] as const;
