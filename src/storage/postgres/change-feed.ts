/**
 * The change feed: every instance on a database hears every committed change, through
 * PostgreSQL's LISTEN/NOTIFY.
 *
 * A write batch NOTIFYs its events inside its own transaction, so they are sent exactly when
 * it commits and never for a rollback. PostgreSQL delivers notifications to each listening
 * session in commit order, and message ids are commit-ordered (see write-ops.ts), so events
 * heard on one LISTEN connection arrive with message ids increasing. Each instance emits only
 * what arrives on its LISTEN connection, its own writes included: one path, one order, each
 * event once.
 *
 * A notification carries at most 7999 bytes, and a message may be far larger. Events are
 * packed into as many notifications as they need; a message whose event does not fit goes
 * as a reference without its text, which the receiver reads back by id before emitting
 * anything after it, so order is kept.
 *
 * If the LISTEN connection drops, notifications sent meanwhile are lost to this instance.
 * The feed reconnects with backoff and, once listening again and before anything heard on
 * the new connection, emits `{ type: 'resync' }` so that listeners re-read from storage.
 */
import { createHash, randomUUID } from 'node:crypto';
import pg from 'pg';
import type { Message } from '../../protocol/types.js';
import type { StorageLogger, StoreEvent } from '../storage.js';

/** A message event as it travels when its text does not fit into a notification. */
interface MessageRef {
  type: 'message-ref';
  message: Omit<Message, 'message'>;
}

type WireEvent = Exclude<StoreEvent, { type: 'resync' }> | MessageRef;

/** One notification's payload. */
interface Envelope {
  /** Format version: a receiver skips (and resyncs on) what it cannot read. */
  v: 1;
  /** The instance that wrote the batch. */
  i: string;
  /** The batch number within that instance. */
  b: number;
  /** Part number within the batch; every part is distinct, so PostgreSQL never folds two together. */
  p: number;
  /** True on the batch's last part. */
  l: boolean;
  e: WireEvent[];
}

/** NOTIFY refuses a payload of 8000 bytes or more; keep well inside it, envelope included. */
const PAYLOAD_BUDGET = 7000;
/** The largest single event put into a payload; anything larger is referenced or split. */
const EVENT_BUDGET = 6000;

/** Settings of a {@link ChangeFeed}. */
export interface ChangeFeedOptions {
  /** How to open the dedicated LISTEN connection (the pool's settings, minus the pool). */
  client: pg.ClientConfig;
  /** The notification channel: one per schema, so stores sharing a database stay apart. */
  channel: string;
  /** Reads message texts by id for references; rejects if storage is unavailable. */
  fetchBodies: (seqs: number[]) => Promise<Map<number, string>>;
  /** Receives events in commit order. */
  emit: (events: readonly StoreEvent[]) => void;
  logger?: StorageLogger;
  /** First and largest pause between reconnection attempts. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** How often an idle LISTEN connection is checked to be alive; 0 turns it off. */
  heartbeatMs?: number;
}

/** The notification channel for a schema: a legal identifier (at most 63 bytes) whatever the schema's name. */
export function channelFor(schema: string): string {
  const plain = `postbox:${schema}`;
  if (Buffer.byteLength(plain) <= 63) return plain;
  return `postbox:${createHash('sha256').update(schema).digest('hex').slice(0, 40)}`;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** See the module comment. */
export class ChangeFeed {
  /** This instance's name in the envelopes it writes. */
  readonly instance = randomUUID();
  private client: pg.Client | undefined;
  private listening = false;
  private closed = false;
  private resyncOwed = false;
  /** Set once the first connection listens: from then on a lost connection owes a resync. */
  private started = false;
  private beating = false;
  private reconnectDelay: number;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  /** Deliveries run one after another, so a slow body read never lets a later event overtake. */
  private delivery: Promise<void> = Promise.resolve();
  private readonly echoes = new Map<number, () => void>();
  private nextBatch = 1;

  constructor(private readonly options: ChangeFeedOptions) {
    this.reconnectDelay = options.reconnectMinMs ?? 100;
  }

  /** Connects and starts listening; rejects if that fails. */
  async start(): Promise<void> {
    await this.connect();
    const every = this.options.heartbeatMs ?? 10_000;
    if (every > 0) {
      this.heartbeatTimer = setInterval(() => void this.heartbeat(every), every);
      this.heartbeatTimer.unref();
    }
  }

  /** A fresh batch number for {@link encode}. */
  batchNumber(): number {
    return this.nextBatch++;
  }

  /** The payloads that carry a batch's events, in order; none for no events. */
  encode(batch: number, events: readonly StoreEvent[]): string[] {
    const parts: WireEvent[][] = [];
    let current: WireEvent[] = [];
    let size = 0;
    const add = (event: WireEvent) => {
      const bytes = Buffer.byteLength(JSON.stringify(event)) + 1;
      if (current.length > 0 && size + bytes > PAYLOAD_BUDGET) {
        parts.push(current);
        current = [];
        size = 0;
      }
      current.push(event);
      size += bytes;
    };
    for (const event of events) {
      if (event.type === 'resync') continue;
      const bytes = Buffer.byteLength(JSON.stringify(event));
      if (bytes <= EVENT_BUDGET) add(event);
      else if (event.type === 'message') {
        const { message: _text, ...rest } = event.message;
        add({ type: 'message-ref', message: rest });
      } else if (event.type === 'read') {
        // Several read events with the same time say the same as one. Cut by size, not by
        // count: each id comes with its sender, and user ids vary in length.
        const empty = () => ({ ...event, ids: [] as string[], senders: [] as string[] });
        const base = Buffer.byteLength(JSON.stringify(empty()));
        let part = empty();
        let partBytes = base;
        event.ids.forEach((id, i) => {
          const sender = event.senders[i] ?? '';
          const more = Buffer.byteLength(JSON.stringify(id)) + Buffer.byteLength(JSON.stringify(sender)) + 2;
          if (part.ids.length > 0 && partBytes + more > EVENT_BUDGET) {
            add(part);
            part = empty();
            partBytes = base;
          }
          part.ids.push(id);
          part.senders.push(sender);
          partBytes += more;
        });
        if (part.ids.length > 0) add(part);
      } else {
        add(event); // user ids are bounded: never near the limit, but a clear error if so
      }
    }
    if (current.length > 0) parts.push(current);
    return parts.map((e, p) => {
      const envelope: Envelope = { v: 1, i: this.instance, b: batch, p, l: p === parts.length - 1, e };
      const payload = JSON.stringify(envelope);
      if (Buffer.byteLength(payload) >= 8000) throw new Error('a change notification would exceed PostgreSQL\'s 8000-byte limit');
      return payload;
    });
  }

  /**
   * Arms a wait for a batch's own notifications to be heard and emitted here, so that the
   * batch's writers are answered only after local listeners were told (as on SQLite).
   * Resolves at once if the feed is down, when it drops, or after `timeoutMs` at worst;
   * `cancel` is for a batch that did not commit.
   */
  expectEcho(batch: number, timeoutMs = 2000): { heard: Promise<void>; cancel: () => void } {
    if (!this.listening || this.closed) return { heard: Promise.resolve(), cancel: () => undefined };
    let timer: NodeJS.Timeout | undefined;
    const heard = new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.echoes.delete(batch);
        resolve();
      };
      this.echoes.set(batch, done);
      timer = setTimeout(done, timeoutMs);
      timer.unref();
    });
    return { heard, cancel: () => this.echoes.get(batch)?.() };
  }

  /** Stops listening and waits for deliveries under way to finish. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.heartbeatTimer);
    this.releaseEchoes();
    const client = this.client;
    this.client = undefined;
    this.listening = false;
    await client?.end().catch(() => undefined);
    await this.delivery;
  }

  private async connect(): Promise<void> {
    const client = new pg.Client(this.options.client);
    let state: 'connecting' | 'listening' | 'gone' = 'connecting';
    const lost = (err: unknown) => {
      if (state === 'gone') return;
      const was = state;
      state = 'gone';
      // Once the feed has been whole, any lost connection may have cost notifications.
      if (this.started) this.resyncOwed = true;
      // While connecting, connect() or LISTEN rejecting reports it instead.
      if (was === 'listening') this.dropped(client, err);
    };
    // Read through a function: TypeScript cannot see the handlers change it across awaits.
    const isGone = () => state === 'gone';
    client.on('error', lost);
    client.on('end', () => lost(new Error('the LISTEN connection ended')));
    client.on('notification', (n) => {
      if (state === 'gone' || n.channel !== this.options.channel) return;
      // Heard on this connection, so LISTEN is in force: a resync owed goes first. (This can
      // run before the LISTEN query's answer has been handed back below.)
      this.payResync();
      const payload = n.payload ?? '';
      this.enqueue(() => this.deliver(payload));
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${quoteIdent(this.options.channel)}`);
      if (isGone()) throw new Error('the LISTEN connection ended while starting');
      if (this.closed) throw new Error('closed while starting');
    } catch (err) {
      // A resync this connection paid (for notifications heard just before it failed) is
      // owed again: more may be lost before the next one listens.
      if (this.started) this.resyncOwed = true;
      state = 'gone';
      await client.end().catch(() => undefined);
      throw err;
    }
    state = 'listening';
    this.client = client;
    this.listening = true;
    this.started = true;
    this.reconnectDelay = this.options.reconnectMinMs ?? 100;
    this.payResync();
  }

  private payResync(): void {
    if (!this.resyncOwed) return;
    this.resyncOwed = false;
    this.enqueue(() => {
      this.options.emit([{ type: 'resync' }]);
      return Promise.resolve();
    });
  }

  private dropped(client: pg.Client, err: unknown): void {
    if (this.client !== client) return;
    this.client = undefined;
    this.listening = false;
    this.resyncOwed = true;
    // Commits made from now until listening again are not heard here: nobody waits for them.
    this.releaseEchoes();
    client.end().catch(() => undefined);
    if (this.closed) return;
    this.options.logger?.warn({ err }, 'lost the PostgreSQL LISTEN connection; reconnecting');
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const delay = this.reconnectDelay;
    this.reconnectDelay = Math.min(delay * 2, this.options.reconnectMaxMs ?? 5000);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.closed) return;
      this.connect().then(
        () => this.options.logger?.info({ channel: this.options.channel }, 'listening for PostgreSQL change notifications again'),
        () => this.scheduleReconnect(),
      );
    }, delay);
    this.reconnectTimer.unref();
  }

  /** A LISTEN connection can die without a word (a silent network); ask it something now and then. */
  private async heartbeat(timeoutMs: number): Promise<void> {
    const client = this.client;
    if (!client || !this.listening || this.beating) return;
    this.beating = true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('the LISTEN connection did not answer a heartbeat')), timeoutMs);
    });
    try {
      await Promise.race([client.query('SELECT 1'), timeout]);
    } catch (err) {
      this.dropped(client, err);
    } finally {
      clearTimeout(timer);
      this.beating = false;
    }
  }

  private releaseEchoes(): void {
    for (const done of [...this.echoes.values()]) done();
  }

  private enqueue(task: () => Promise<void>): void {
    this.delivery = this.delivery.then(task).catch((err: unknown) => {
      // Never expected (deliver handles its own failures), but a broken chain would go deaf.
      this.options.logger?.error({ err }, 'change notification delivery failed');
    });
  }

  private async deliver(payload: string): Promise<void> {
    let envelope: Envelope;
    try {
      envelope = JSON.parse(payload) as Envelope;
      if (envelope.v !== 1 || !Array.isArray(envelope.e)) throw new Error(`unknown notification format ${String(envelope.v)}`);
    } catch (err) {
      // From a newer or foreign writer: what it said is unknown, so listeners must look.
      this.options.logger?.warn({ err }, 'unreadable change notification; asking listeners to resync');
      this.options.emit([{ type: 'resync' }]);
      return;
    }
    const events = await this.resolve(envelope.e);
    if (events.length > 0) this.options.emit(events);
    if (envelope.i === this.instance && envelope.l) this.echoes.get(envelope.b)?.();
  }

  /**
   * Fills in the texts of referenced messages. A message deleted since is left out (its
   * deletion follows). If the texts cannot be read (storage is away), the first reference
   * becomes a resync, so listeners re-read from storage what they could not be told, and
   * the events around it still go out in order.
   */
  private async resolve(wire: readonly WireEvent[]): Promise<StoreEvent[]> {
    const refs = wire.flatMap((e) => (e.type === 'message-ref' ? [Number(e.message.id)] : []));
    let bodies: Map<number, string> | null = new Map();
    if (refs.length > 0) {
      try {
        bodies = await this.options.fetchBodies(refs);
      } catch (err) {
        this.options.logger?.warn({ err }, 'could not read back a notified message; asking listeners to resync');
        bodies = null;
      }
    }
    const events: StoreEvent[] = [];
    let resynced = false;
    for (const e of wire) {
      if (e.type !== 'message-ref') {
        events.push(e);
        continue;
      }
      if (bodies === null) {
        if (!resynced) events.push({ type: 'resync' });
        resynced = true;
        continue;
      }
      const body = bodies.get(Number(e.message.id));
      if (body === undefined) continue;
      const { id, fromUser, toUser, sentAt, readAt } = e.message;
      // The event says what was sent, whatever has happened to the row since.
      events.push({ type: 'message', message: { id, fromUser, toUser, message: body, sentAt, readAt } });
    }
    return events;
  }
}
