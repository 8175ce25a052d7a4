/**
 * Live streams: one user's inbox as server-sent events that resume from a cursor with no
 * gap and no duplicate, and the registry that bounds how many there are.
 *
 * The seam between replay and live is where gaps hide. A stream subscribes to the hub
 * before it reads anything, so every commit from then on is heard; it replays from storage
 * after its cursor, buffering what it hears meanwhile; then it delivers the buffered events
 * whose ids are past what the replay reached, and goes live. Storage tells the hub in
 * commit order (see storage.ts), so ids only grow from there.
 */
import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Actor } from '../domain/access.js';
import type { PageParams, WireMessagePage } from '../domain/messages.js';
import { AppError } from '../errors.js';
import type { StoreEvent } from '../storage/storage.js';
import type { Hub } from './hub.js';
import { sseComment, sseEvent, sseRetry } from './sse.js';

/** Settings of the stream registry. */
export interface StreamLimits {
  /** Streams one user may hold open at once. */
  perUser: number;
  /** Streams this instance holds open at once. */
  total: number;
  /** Interval of the comment heartbeat that keeps idle connections open. */
  heartbeatMs: number;
  /** Bytes a stream may have waiting for a client that does not read, before it is closed. */
  bufferBytes: number;
  /** The `retry:` hint: how long a client waits before reconnecting. */
  retryMs: number;
}

/** Everything a stream needs to start. */
export interface StreamOptions {
  user: string;
  actor: Actor;
  /** Resume after this message id; undefined for "from now on". */
  after: string | undefined;
  /** Reads a page of the user's inbox in wire form, with the caller's access. */
  readPage: (params: PageParams) => Promise<WireMessagePage>;
  /**
   * Asked at each heartbeat whether the caller's token still holds. Revocation is also an
   * event, but one made in another process on a SQLite store (`postbox users remove`) is
   * heard by no hub; this catches it within a heartbeat.
   */
  stillAuthorized?: () => Promise<boolean>;
  /** When the caller's credential (a JWT) expires, in epoch ms: the stream ends then. */
  endsAt?: number;
  response: ServerResponse;
}

/** Messages read per page while replaying. */
const REPLAY_PAGE = 500;
/** Events a replaying stream keeps; past this it replays once more instead. */
const BUFFER_EVENTS = 10_000;

/** Bounds and tracks the live streams of one instance. */
export class StreamRegistry {
  private readonly byUser = new Map<string, Set<LiveStream>>();
  private count = 0;

  constructor(
    private readonly hub: Hub,
    readonly limits: StreamLimits,
    private readonly log: Pick<Logger, 'warn' | 'debug'>,
  ) {}

  /** Streams open now. */
  get open(): number {
    return this.count;
  }

  /** Throws the problem a new stream for `user` would meet past the limits. */
  admit(user: string): void {
    if (this.count >= this.limits.total) {
      throw new AppError('server_busy', `this server holds its limit of ${this.limits.total} streams; try again soon`, {
        headers: { 'Retry-After': '5' },
      });
    }
    const mine = this.byUser.get(user)?.size ?? 0;
    if (mine >= this.limits.perUser) {
      throw new AppError('too_many_streams', `"${user}" already has ${mine} open streams, the limit`, {
        headers: { 'Retry-After': '5' },
      });
    }
  }

  /** Starts a stream on a response the caller has taken over. */
  start(options: StreamOptions): LiveStream {
    this.admit(options.user);
    const stream = new LiveStream(options, this.hub, this.limits, this.log, () => this.forget(stream));
    let set = this.byUser.get(options.user);
    if (!set) {
      set = new Set();
      this.byUser.set(options.user, set);
    }
    set.add(stream);
    this.count++;
    stream.begin();
    return stream;
  }

  /** Ends every stream (at shutdown): clients reconnect, to another instance if there is one. */
  closeAll(): void {
    for (const set of [...this.byUser.values()]) for (const s of [...set]) s.close();
  }

  private forget(stream: LiveStream): void {
    const set = this.byUser.get(stream.user);
    if (!set?.delete(stream)) return;
    this.count--;
    if (set.size === 0) this.byUser.delete(stream.user);
  }
}

/** One live stream. */
export class LiveStream {
  readonly user: string;
  private readonly res: ServerResponse;
  private mode: 'replaying' | 'live' | 'closed' = 'replaying';
  /** The newest message id delivered, or that the client said it has. */
  private cursor: number | undefined;
  private buffered: StoreEvent[] = [];
  private overflowed = false;
  private unsubscribe: () => void = () => undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private expiry: NodeJS.Timeout | undefined;

  constructor(
    private readonly options: StreamOptions,
    private readonly hub: Hub,
    private readonly limits: StreamLimits,
    private readonly log: Pick<Logger, 'warn' | 'debug'>,
    private readonly onClose: () => void,
  ) {
    this.user = options.user;
    this.res = options.response;
    this.cursor = options.after === undefined ? undefined : Number(options.after);
  }

  /** Sends the headers, subscribes, replays what was missed, and goes live. */
  begin(): void {
    this.res.on('close', () => this.close());
    this.res.on('error', () => this.close());
    this.res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      'x-content-type-options': 'nosniff',
    });
    this.write(sseRetry(this.limits.retryMs));
    this.heartbeat = setInterval(() => this.beat(), this.limits.heartbeatMs);
    this.heartbeat.unref();
    if (this.options.endsAt !== undefined) this.expireAt(this.options.endsAt);
    void this.run();
  }

  /** Ends the stream and frees everything it holds; `abort` drops what the client has not read. */
  close(abort = false): void {
    if (this.mode === 'closed') return;
    this.mode = 'closed';
    this.unsubscribe();
    clearInterval(this.heartbeat);
    clearTimeout(this.expiry);
    this.buffered = [];
    if (abort) this.res.destroy();
    else if (!this.res.writableEnded) this.res.end();
    this.onClose();
  }

  /** A method, not a field test: writes can close the stream between two awaits. */
  private get closed(): boolean {
    return this.mode === 'closed';
  }

  private async run(): Promise<void> {
    try {
      if (this.cursor === undefined) {
        // "From now on" is a resume after the newest message at connect time, read before
        // subscribing: whatever commits after this read is replayed or heard, never lost.
        // An empty inbox leaves no cursor: the replay then reads from its very start.
        const newest = (await this.options.readPage({ before: 'latest', limit: 1 })).rows[0];
        if (newest) this.cursor = Number(newest[0]);
      }
      if (this.closed) return;
      // Subscribe before replaying: from here on no commit goes unheard.
      this.unsubscribe = this.hub.subscribe(this.user, (event) => this.hear(event));
      await this.catchUp();
    } catch (err) {
      // Storage is away: end the stream; the client resumes from its last id.
      this.log.warn({ err, user: this.user }, 'stream could not replay; closing it');
      this.close();
    }
  }

  private hear(event: StoreEvent): void {
    if (this.closed) return;
    if (event.type === 'user-removed') return this.end('the user was removed');
    if (event.type === 'tokens-revoked') {
      if (this.options.actor.kind === 'user') this.end('the token was revoked');
      return;
    }
    if (this.mode === 'replaying') {
      // A resync heard mid-replay may cover commits the read in flight missed: read again.
      if (event.type === 'resync' || this.buffered.length >= BUFFER_EVENTS) {
        this.buffered = [];
        this.overflowed = true;
      } else if (!this.overflowed) {
        this.buffered.push(event);
      }
      return;
    }
    if (event.type === 'resync') {
      // The change feed may have lost something: read storage again past the cursor.
      this.mode = 'replaying';
      this.catchUp().catch((err: unknown) => {
        this.log.warn({ err, user: this.user }, 'stream could not replay; closing it');
        this.close();
      });
      return;
    }
    this.deliver(event);
  }

  /** Writes one event if it concerns this inbox and is news. */
  private deliver(event: StoreEvent): void {
    switch (event.type) {
      case 'message': {
        const id = Number(event.message.id);
        if (this.cursor !== undefined && id <= this.cursor) return;
        this.cursor = id;
        this.write(sseEvent('message', JSON.stringify(event.message), event.message.id));
        return;
      }
      case 'deleted':
        if (event.toUser === this.user) this.write(sseEvent('deleted', JSON.stringify({ id: event.id })));
        return;
      case 'read':
        this.write(sseEvent('read', JSON.stringify({ ids: event.ids, readAt: event.readAt })));
        return;
      default:
        return;
    }
  }

  /**
   * Reads storage past the cursor until caught up, then delivers what was heard meanwhile
   * (only what the replay did not reach) and goes live.
   */
  private async catchUp(): Promise<void> {
    do {
      this.overflowed = false;
      for (;;) {
        const page = await this.options.readPage({
          ...(this.cursor === undefined ? {} : { after: String(this.cursor) }),
          limit: REPLAY_PAGE,
        });
        if (this.closed) return;
        for (const [id, json] of page.rows) {
          this.cursor = Number(id);
          this.write(sseEvent('message', json, id));
        }
        if (this.closed) return;
        if (page.next === null) break;
        // A slow reader slows the replay instead of growing the buffer.
        if (this.res.writableNeedDrain) await new Promise((r) => this.res.once('drain', r));
      }
    } while (this.overflowed);
    const heard = this.buffered;
    this.buffered = [];
    this.mode = 'live';
    for (const e of heard) this.deliver(e);
  }

  private checking = false;

  private beat(): void {
    this.write(sseComment('keep-alive'));
    const check = this.options.stillAuthorized;
    if (!check || this.checking || this.closed) return;
    this.checking = true;
    check().then(
      (ok) => {
        if (!ok) this.end('the token was revoked');
      },
      // Storage away: say nothing now; the next heartbeat asks again.
      () => undefined,
    ).finally(() => (this.checking = false));
  }

  /** Ends the stream when its credential expires; a timer can wait at most ~24.8 days, so it re-arms. */
  private expireAt(endsAt: number): void {
    const wait = endsAt - Date.now();
    if (wait <= 0) return this.end('token expired');
    this.expiry = setTimeout(() => this.expireAt(endsAt), Math.min(wait, 2 ** 31 - 1));
    this.expiry.unref();
  }

  /** Tells the client why the stream ends, so it does not simply reconnect, then ends it. */
  private end(reason: string): void {
    this.write(sseEvent('end', JSON.stringify({ reason })));
    this.close();
  }

  private write(chunk: string): void {
    if (this.mode === 'closed' || this.res.writableEnded) return;
    this.res.write(chunk);
    if (this.res.writableLength > this.limits.bufferBytes) {
      // The client has stopped reading: drop it rather than hold its backlog in memory.
      this.log.debug({ user: this.user, waiting: this.res.writableLength }, 'stream reader too slow; closing');
      this.close(true);
    }
  }
}
