/**
 * A server-sent events client for tests: connects with node:http, parses events as they
 * arrive, and lets a test await them (no sleeps).
 */
import http from 'node:http';

/** One parsed event. */
export interface SseEvent {
  event: string;
  id: string | undefined;
  data: string;
}

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

/** Opens `path` as an event stream. */
export function openStream(base: string, path: string, headers: Record<string, string> = {}): Promise<SseConnection> {
  return new Promise((resolve, reject) => {
    const req = http.get(new URL(path, base), { headers: { accept: 'text/event-stream', ...headers }, agent: false }, (res) => {
      const events: SseEvent[] = [];
      const comments: string[] = [];
      const waiters: (() => void)[] = [];
      let text = '';
      let pending = '';
      let current: { event?: string; id?: string; data: string[] } = { data: [] };
      res.setEncoding('utf8');
      const ended = new Promise<void>((done) => {
        res.on('end', done);
        res.on('close', done);
        res.on('error', () => done());
      });
      res.on('data', (chunk: string) => {
        text += chunk;
        pending += chunk;
        let nl: number;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl).replace(/\r$/, '');
          pending = pending.slice(nl + 1);
          if (line === '') {
            if (current.data.length > 0 || current.event) {
              events.push({ event: current.event ?? 'message', id: current.id, data: current.data.join('\n') });
            }
            current = { data: [] };
          } else if (line.startsWith(':')) {
            comments.push(line.slice(1).trim());
          } else {
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'event') current.event = value;
            else if (field === 'id') current.id = value;
            else if (field === 'data') current.data.push(value);
          }
        }
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
