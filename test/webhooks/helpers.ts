/**
 * Webhook test helpers: a real receiver on port 0 that records every call, and a dispatcher
 * over a store with a clock the test moves.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { pino } from 'pino';
import { WebhookService } from '../../src/domain/webhooks.js';
import type { CreatedWebhook, WebhookEventType } from '../../src/protocol/webhooks.js';
import type { Storage } from '../../src/storage/storage.js';
import { WebhookDispatcher } from '../../src/webhooks/dispatcher.js';

/** One call a receiver got. */
export interface ReceivedCall {
  headers: IncomingHttpHeaders;
  body: string;
  /** The status it answered. */
  answered: number;
}

/** A receiver: answers `status` (200 unless changed), records every call. */
export interface Receiver {
  url: string;
  calls: ReceivedCall[];
  /** Calls it answered 2xx. */
  accepted(): ReceivedCall[];
  status: number;
  /** Resolves once `n` calls were accepted; rejects after `timeoutMs`. */
  waitAccepted(n: number, timeoutMs?: number): Promise<ReceivedCall[]>;
  close(): Promise<void>;
}

/** Starts a receiver on 127.0.0.1, port 0 unless told which (to come back where a server calls). */
export async function startReceiver(port = 0): Promise<Receiver> {
  const waiters = new Set<() => void>();
  const r: Receiver = {
    url: '',
    calls: [],
    status: 200,
    accepted: () => r.calls.filter((c) => c.answered >= 200 && c.answered < 300),
    waitAccepted: (n, timeoutMs = 20_000) => new Promise((resolve, reject) => {
      const check = () => {
        if (r.accepted().length >= n) {
          waiters.delete(check);
          clearTimeout(timer);
          resolve(r.accepted());
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`receiver got ${r.accepted().length} of ${n} calls within ${timeoutMs} ms`));
      }, timeoutMs);
      waiters.add(check);
      check();
    }),
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const answered = r.status;
      r.calls.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), answered });
      res.writeHead(answered).end();
      for (const w of [...waiters]) w();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const address = server.address() as { port: number };
  r.url = `http://127.0.0.1:${address.port}/hook`;
  return r;
}

/** A clock that stands still until the test moves it. */
export class TestClock {
  constructor(public ms = Date.now()) {}
  readonly now = (): number => this.ms;
  advance(ms: number): void {
    this.ms += ms;
  }
}

const silent = pino({ level: 'silent' });

/** A dispatcher over `storage` driven by `clock`, jitter fixed at its top (factor 1). */
export function testDispatcher(
  storage: Storage, clock: TestClock, options: { allowPrivate?: boolean; retentionMs?: number; callTimeoutMs?: number } = {},
): WebhookDispatcher {
  return new WebhookDispatcher(storage.webhooks, {
    allowPrivate: options.allowPrivate ?? true,
    retentionMs: options.retentionMs ?? 7 * 24 * 3600_000,
    logger: silent,
    clock: clock.now,
    random: () => 0.999,
    pollMs: 50,
    ...(options.callTimeoutMs === undefined ? {} : { callTimeoutMs: options.callTimeoutMs }),
  });
}

/** Makes an endpoint through the domain, as the admin. */
export function addEndpoint(storage: Storage, url: string, events: WebhookEventType[], clock?: TestClock): Promise<CreatedWebhook> {
  return new WebhookService(storage.webhooks, { allowPrivate: true, ...(clock ? { clock: clock.now } : {}) })
    .create({ kind: 'admin' }, { url, events });
}

/** Runs dispatcher rounds until one makes no call (at most `max`). */
export async function drain(dispatcher: WebhookDispatcher, max = 50): Promise<void> {
  for (let i = 0; i < max; i++) if ((await dispatcher.runOnce()) === 0) return;
  throw new Error('the dispatcher never ran out of work');
}
