/**
 * The live stream (`GET /v1/users/{user}/stream`): its events and their framing in the
 * WHATWG `text/event-stream` format. The server frames with these functions; the client and
 * the web app read the same event names and data shapes.
 *
 * Plain data and string functions only, no Node imports: the web app compiles this file as is.
 */
import type { Message } from './types.js';

/** The data each named event carries, as JSON in its `data:` lines. */
export interface StreamEventData {
  /** A message to the user; the event's `id:` is the message id, the cursor a reconnect resumes after. */
  message: Message;
  /**
   * A message the user sent to someone else, from any tab, device or client, on a stream
   * opened with `sent=true`; its `id:` is the message id, in the same sequence as `message`.
   */
  sent: Message;
  /** A message to the user (or, with `sent=true`, one the user sent) was deleted. */
  deleted: { id: string };
  /** Messages to the user were marked read. */
  read: { ids: string[]; readAt: string };
  /** Messages the user sent were read by their recipient `by`: a read receipt (not replayed on resume). */
  receipt: { ids: string[]; readAt: string; by: string };
  /** The stream ends for good (user removed, token revoked): the client must not reconnect. */
  end: { reason: string };
}

/** The name of a stream event. */
export type StreamEventName = keyof StreamEventData;

/** Every event name the server sends, for a reader that wants to recognise them. */
export const STREAM_EVENT_NAMES: readonly StreamEventName[] = Object.freeze(['message', 'sent', 'deleted', 'read', 'receipt', 'end']);

/** The text of the comment the server sends as a heartbeat (`: keep-alive`); readers ignore it. */
export const HEARTBEAT_COMMENT = 'keep-alive';

/** The `Content-Type` of a stream. */
export const EVENT_STREAM_TYPE = 'text/event-stream; charset=utf-8';

/**
 * One event. `data` is already JSON (the stored wire text of a message is sent as is); one
 * with line breaks becomes several `data:` lines, as the format requires.
 */
export function frameEvent(event: StreamEventName, data: string, id?: string): string {
  let out = `event: ${event}\n`;
  if (id !== undefined) out += `id: ${id}\n`;
  for (const line of data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`;
  return `${out}\n`;
}

/** A comment line: ignored by clients, it keeps proxies from closing an idle connection. */
export function frameComment(text: string): string {
  return `: ${text}\n\n`;
}

/** How long a client should wait before reconnecting, in milliseconds. */
export function frameRetry(ms: number): string {
  return `retry: ${ms}\n\n`;
}
