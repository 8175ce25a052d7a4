/**
 * A server-sent events client for tests: connects with node:http, parses events as they
 * arrive with the client's parser (the repo's one), and lets a test await them (no sleeps).
 * node:http rather than the client's fetch, so a test sees the raw status, headers and text.
 */
import http from 'node:http';
import { SseParser, type SseEvent } from '../../src/client/stream.js';

export type { SseEvent };

/** An open stream. */
export interface SseConnection {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Every event so far, in order. */
  events: SseEvent[];
  /** Comment lines so far (heartbeats). */
  comments: string[];
  /** The raw text so far. */
  raw: () => string;
  /** Resolves when `count` events (optionally of one type) have arrived. */
  waitFor(count: number, type?: string, timeoutMs?: number): Promise<SseEvent[]>;
  /** Resolves when the server ends the stream. */
  ended: Promise<void>;
  /** Body of a non-200 answer. */
  body: () => string;
  close(): void;
}

/**
 * Opens `path` as an event stream. `onEvent` is told each event as it is parsed, within the
 * turn its bytes arrived in (a test that must act the instant it sees something).
 */
export function openStream(
  base: string,
  path: string,
  headers: Record<string, string> = {},
  onEvent?: (event: SseEvent) => void,
): Promise<SseConnection> {
  return new Promise((resolve, reject) => {
    const req = http.get(new URL(path, base), { headers: { accept: 'text/event-stream', ...headers }, agent: false }, (res) => {
      const events: SseEvent[] = [];
      const comments: string[] = [];
      const waiters: (() => void)[] = [];
      let text = '';
      const parser = new SseParser((e) => {
        events.push(e);
        onEvent?.(e);
      }, (c) => comments.push(c));
      res.setEncoding('utf8');
      const ended = new Promise<void>((done) => {
        res.on('end', done);
        res.on('close', done);
        res.on('error', () => done());
      });
      res.on('data', (chunk: string) => {
        text += chunk;
        parser.push(chunk);
        for (const w of [...waiters]) w();
      });
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        events,
        comments,
        raw: () => text,
        body: () => text,
        ended,
        waitFor(count, type, timeoutMs = 20_000) {
          const matching = () => events.filter((e) => type === undefined || e.event === type);
          return new Promise((done, fail) => {
            const check = () => {
              if (matching().length >= count) {
                clearTimeout(timer);
                waiters.splice(waiters.indexOf(check), 1);
                done(matching());
              }
            };
            const timer = setTimeout(() => {
              waiters.splice(waiters.indexOf(check), 1);
              fail(new Error(`waited for ${count} ${type ?? ''} events, have ${matching().length}:\n${text.slice(-2000)}`));
            }, timeoutMs);
            waiters.push(check);
            check();
            void ended.then(() => {
              if (matching().length < count) {
                clearTimeout(timer);
                fail(new Error(`stream ended with ${matching().length} of ${count} ${type ?? ''} events:\n${text.slice(-2000)}`));
              }
            });
          });
        },
        close: () => {
          req.destroy();
          res.destroy();
        },
      });
    });
    req.on('error', reject);
  });
}
