/**
 * Moving a store: export as JSON Lines (one record per line: users, then removed users'
 * reserved ids, then tokens, then messages, so an import can replay them in order) and
 * import back, on any backend.
 *
 * An import file has passed none of the rules a message sent over HTTP passed, so every
 * record is checked here against the same rules, and a bad one is refused naming its line
 * and field, before anything from it is stored.
 */
import { AppError } from '../errors.js';
import type { ExportRecord } from '../storage/storage.js';
import { exactIdProblem, messageSeq } from './rules.js';

/** One JSON Lines line for a record. */
export function recordLine(record: ExportRecord): string {
  return `${JSON.stringify(record)}\n`;
}

function bad(line: number, field: string, message: string): AppError {
  return new AppError('validation', `line ${line}: ${field} ${message}`, { errors: [{ field: `line ${line}: ${field}`, message }] });
}

function userId(value: unknown, line: number, field: string): string {
  if (typeof value !== 'string') throw bad(line, field, 'must be a user id (a string)');
  const problem = exactIdProblem(value);
  if (problem) throw bad(line, field, problem);
  return value;
}

/** An ISO 8601 time, in the canonical form the server writes (UTC, milliseconds). */
function time(value: unknown, line: number, field: string): string {
  const ms = typeof value === 'string' ? Date.parse(value) : NaN;
  if (Number.isNaN(ms)) throw bad(line, field, 'must be an ISO 8601 time');
  return new Date(ms).toISOString();
}

/** Parses and checks one line of an export; blank lines are not records (null). */
export function parseRecord(text: string, line: number): ExportRecord | null {
  if (text.trim() === '') return null;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw bad(line, 'record', 'is not valid JSON');
  }
  const r = raw as Record<string, unknown> | null;
  if (typeof r !== 'object' || r === null || Array.isArray(r)) throw bad(line, 'record', 'must be a JSON object');
  switch (r.type) {
    case 'user':
      return { type: 'user', id: userId(r.id, line, 'id'), createdAt: time(r.createdAt, line, 'createdAt') };
    case 'reservation':
      return { type: 'reservation', id: userId(r.id, line, 'id'), removedAt: time(r.removedAt, line, 'removedAt') };
    case 'token':
      if (typeof r.hash !== 'string' || !/^[0-9a-f]{64}$/.test(r.hash)) throw bad(line, 'hash', 'must be a SHA-256 in hex');
      if (r.scopes !== undefined && (typeof r.scopes !== 'string' || !/^(?:full|send|read)(?: (?:full|send|read))*$/.test(r.scopes))) {
        throw bad(line, 'scopes', 'must be space-separated scopes (full, send, read)');
      }
      return {
        type: 'token', user: userId(r.user, line, 'user'), hash: r.hash, createdAt: time(r.createdAt, line, 'createdAt'),
        ...(r.scopes === undefined ? {} : { scopes: r.scopes }),
      };
    case 'message': {
      const m = r.message as Record<string, unknown> | null;
      if (typeof m !== 'object' || m === null) throw bad(line, 'message', 'must be a JSON object');
      if (typeof m.id !== 'string' || messageSeq(m.id) === null) throw bad(line, 'message.id', 'must be a message id');
      if (typeof m.message !== 'string') throw bad(line, 'message.message', 'must be a string');
      if (!m.message.isWellFormed()) throw bad(line, 'message.message', 'must be valid Unicode text');
      if (m.message.includes('\u0000')) throw bad(line, 'message.message', 'must not contain the NUL character (U+0000)');
      return {
        type: 'message',
        message: {
          id: m.id,
          fromUser: userId(m.fromUser, line, 'message.fromUser'),
          toUser: userId(m.toUser, line, 'message.toUser'),
          message: m.message,
          sentAt: time(m.sentAt, line, 'message.sentAt'),
          readAt: m.readAt === null ? null : time(m.readAt, line, 'message.readAt'),
        },
      };
    }
    default:
      throw bad(line, 'type', 'must be user, reservation, token or message');
  }
}

/** Checked records from lines of text (an export file), in order. */
export async function* readRecords(lines: AsyncIterable<string>): AsyncGenerator<ExportRecord> {
  let n = 0;
  for await (const text of lines) {
    const record = parseRecord(text, ++n);
    if (record) yield record;
  }
}
