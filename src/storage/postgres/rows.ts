/**
 * How PostgreSQL rows map to the domain's shapes: the canonical wire JSON built in SQL for
 * the reads, and a Message from columns for what the writes answer.
 */
import pg from 'pg';
import type { Message } from '../../protocol/types.js';

/** The columns of `messages`, in the order {@link toMessage} expects. */
export const MESSAGE_COLUMNS = 'seq, from_user, to_user, body, sent_at, read_at';

/** A row of `messages`, with bigints already numbers (see {@link PG_TYPES}). */
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

/** Epoch milliseconds as ISO 8601 with milliseconds, exactly as `Date.toISOString` writes them. */
function isoSql(column: string): string {
  // Whole seconds and the milliseconds apart: integer arithmetic, so no rounding of .xyz.
  return `to_char(to_timestamp(${column} / 1000) AT TIME ZONE 'UTC' + (${column} % 1000) * interval '1 millisecond', ` +
    `'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
}

/**
 * A message row of `messages AS m` as its canonical wire JSON (protocol/wire.ts), built by the
 * database so that a page costs this server no object per message. `row_to_json` over
 * columns aliased in the wire's key order writes no spaces and escapes as `JSON.stringify`
 * does (`json_build_object` would put spaces around every colon and comma).
 */
export const WIRE_JSON = `(SELECT row_to_json(w)::text FROM (SELECT m.seq::text AS "id", m.from_user AS "fromUser", ` +
  `m.to_user AS "toUser", m.body AS "message", ${isoSql('m.sent_at')} AS "sentAt", ` +
  `CASE WHEN m.read_at IS NULL THEN NULL ELSE ${isoSql('m.read_at')} END AS "readAt") AS w)`;

/**
 * The columns of a page row of `messages AS m`, read in array mode: the row is the wire row.
 * The id is aliased away from `seq` so that `ORDER BY seq` orders by the number, not the text.
 */
export const WIRE_COLUMNS = `m.seq::text AS id, ${WIRE_JSON} AS json`;

const INT8_OID = 20;

/**
 * Type parsing for this backend's pools only (never the driver's global table, which other
 * code in the process may rely on). Sequence numbers and epoch milliseconds are bigints in
 * the schema but stay far below 2^53, so they are read as plain numbers; one that is not
 * is refused rather than silently rounded.
 */
export const PG_TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === INT8_OID && format !== 'binary') {
      return (value: string): number => {
        const n = Number(value);
        if (!Number.isSafeInteger(n)) throw new RangeError(`bigint ${value} is beyond what this server can represent`);
        return n;
      };
    }
    return pg.types.getTypeParser(oid, format ?? 'text') as unknown;
  }) as pg.CustomTypesConfig['getTypeParser'],
};
