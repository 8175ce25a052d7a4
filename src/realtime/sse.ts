/**
 * Server-sent events framing (the WHATWG `text/event-stream` format).
 */

/** One event. A `data` string with line breaks becomes several `data:` lines, as the format requires. */
export function sseEvent(event: string, data: string, id?: string): string {
  let out = `event: ${event}\n`;
  if (id !== undefined) out += `id: ${id}\n`;
  for (const line of data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`;
  return `${out}\n`;
}

/** A comment line: ignored by clients, it keeps proxies from closing an idle connection. */
export function sseComment(text: string): string {
  return `: ${text}\n\n`;
}

/** How long a client should wait before reconnecting, in milliseconds. */
export function sseRetry(ms: number): string {
  return `retry: ${ms}\n\n`;
}
