/**
 * Live streams: one user's inbox (and, if asked, what the user sends) as server-sent events that resume from a cursor with no
 * gap and no duplicate, and the registry that checks, admits and bounds them.
 *
 * The seam between replay and live is where gaps hide. A stream subscribes to the hub
 * before it reads anything, so every commit from then on is heard; it replays from storage
 * after its cursor, buffering what it hears meanwhile; then it delivers the buffered events
 * whose ids are past what the replay reached, and goes live. Storage tells the hub in
 * commit order (see storage.ts), so ids only grow from there.
 *
 * A stream is a byte stream (a Node `Readable`), not an HTTP response: the route hands it to
 * Fastify, so every hook's headers (CORS, security, rate limits) arrive on it as on any answer.
 */
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Actor } from '../domain/access.js';
import type { MessageService, PageParams, WireMessagePage } from '../domain/messages.js';
import { toCursor } from '../domain/rules.js';
import type { UserService } from '../domain/users.js';
import { AppError } from '../errors.js';
import { frameComment, frameEvent, frameRetry, HEARTBEAT_COMMENT } from '../protocol/events.js';
import { isSentBy, messageJson } from '../protocol/wire.js';
import type { StoreEvent } from '../storage/storage.js';
import type { Hub } from './hub.js';

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

/** A request for a stream, as the caller made it: nothing in it is checked yet. */
export interface StreamRequest {
  actor: Actor;
  /** Whose inbox. */
  user: string;
  /** `after=`: resume after this message id; absent for "from now on". */
  after?: string | undefined;
  /** The `Last-Event-ID` an EventSource sends when it reconnects; wins over `after`. */
  lastEventId?: string | undefined;
  /** The bearer token the caller authenticated with, asked again at each heartbeat. */
  token?: string | undefined;
  /** `sent=true`: also carry the messages the user sends, as `sent` events. */
  sent?: boolean | undefined;
}

/** Where streams read from: the inbox (with the caller's access) and the token check. */
export interface StreamSources {
  messages: MessageService;
  users: UserService;
}

/** Everything a stream needs to start. */
interface StreamOptions {
  user: string;
  actor: Actor;
  /** Resume after this message id; undefined for "from now on". */
  after: string | undefined;
  /** Also carry what the user sends (`sent` events, and `deleted` for them). */
  sent: boolean;
  /** Reads a page of the user's inbox (with `sent`, and sent box) in wire form, with the caller's access. */
  readPage: (params: PageParams) => Promise<WireMessagePage>;
  /**
   * Asked at each heartbeat, and after a resync, whether the caller's token still holds.
   * Revocation is also an event, but one made in another process (`postbox users remove`
   * beside a SQLite server) reaches the hub only as a resync.
   */
  stillAuthorized?: () => Promise<boolean>;
  /** When the caller's credential (a JWT) expires, in epoch ms: the stream ends then. */
  endsAt?: number;
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
    private readonly sources: StreamSources,
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

  /**
   * Opens a stream of `request.user`'s inbox for `request.actor`: checks access and the
   * cursor, admits it within the limits, and answers its body, which the caller sends as
   * `text/event-stream`. Throws the catalogue error of a refusal before anything is sent.
   */
  start(request: StreamRequest): Readable {
    const { messages, users } = this.sources;
    const { actor, token } = request;
    const user = messages.inboxOwner(actor, request.user);
    const after = request.lastEventId !== undefined && request.lastEventId !== ''
      ? toCursor(request.lastEventId, 'Last-Event-ID')
      : request.after === undefined ? undefined : toCursor(request.after, 'after');
    return this.register({
      user,
      actor,
      after: after === undefined ? undefined : String(after),
      sent: request.sent === true,
      // One id sequence runs through inbox and sent box, so one cursor resumes both.
      readPage: request.sent === true
        ? (params) => messages.mailbox(actor, user, params)
        : (params) => messages.inbox(actor, user, params),
      // A Postbox token can be revoked, so each heartbeat asks again; a JWT cannot, but
      // expires: the stream ends then with `end` {"reason":"token expired"}.
      ...(actor.kind === 'user' && token !== undefined && actor.expiresAt === undefined
        ? { stillAuthorized: async () => (await users.authenticate(token))?.kind === 'user' }
        : {}),
      ...(actor.kind === 'user' && actor.expiresAt !== undefined ? { endsAt: actor.expiresAt } : {}),
    }).body;
  }

  private register(options: StreamOptions): LiveStream {
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
class LiveStream {
  readonly user: string;
  /** The event bytes, read by whoever carries them to the client. */
  readonly body: Readable;
  /** Resolves the replay's wait for the reader to take what it has. */
  private wanted: (() => void) | undefined;
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
    // The readable's own buffer is what waits for a slow client (the transport takes from it
    // only as fast as the client reads); write() measures it against the limit.
    this.body = new Readable({
      read: () => {
        const wanted = this.wanted;
        this.wanted = undefined;
        wanted?.();
      },
    });
    this.cursor = options.after === undefined ? undefined : Number(options.after);
  }

  /** Starts the body with the retry hint, subscribes, replays what was missed, and goes live. */
  begin(): void {
    // The transport destroys the body when the client goes away.
    this.body.on('close', () => this.close());
    this.body.on('error', () => this.close());
    this.write(frameRetry(this.limits.retryMs));
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
    this.wanted?.();
    if (abort) this.body.destroy();
    else if (!this.body.destroyed) this.body.push(null);
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
    // Storage could not say what changed (a gap in PostgreSQL's feed, another process's
    // commit on a SQLite file): the token may have been revoked, or its user removed, too.
    if (event.type === 'resync') this.recheck();
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
        const { message } = event;
        // The hub tells a sender of its messages too; only a stream that asked carries them.
        const sent = message.toUser !== this.user;
        if (sent && !(this.options.sent && message.fromUser === this.user)) return;
        const id = Number(message.id);
        if (this.cursor !== undefined && id <= this.cursor) return;
        this.cursor = id;
        this.write(frameEvent(sent ? 'sent' : 'message', messageJson(message), message.id));
        return;
      }
      case 'deleted':
        if (event.toUser === this.user || (this.options.sent && event.fromUser === this.user)) {
          this.write(frameEvent('deleted', JSON.stringify({ id: event.id })));
        }
        return;
      case 'read': {
        if (event.user === this.user) this.write(frameEvent('read', JSON.stringify({ ids: event.ids, readAt: event.readAt })));
        // A read receipt: which of this user's sent messages the reader has now read.
        const mine = event.ids.filter((_id, i) => event.senders[i] === this.user);
        if (mine.length > 0) this.write(frameEvent('receipt', JSON.stringify({ ids: mine, readAt: event.readAt, by: event.user })));
        return;
      }
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
        for (const row of page.rows) {
          const [id, json] = row;
          this.cursor = Number(id);
          this.write(frameEvent(this.options.sent && isSentBy(row, this.user) ? 'sent' : 'message', json, id));
        }
        if (this.closed) return;
        if (page.next === null) break;
        // A slow reader slows the replay instead of growing the buffer.
        if (this.body.readableLength >= this.body.readableHighWaterMark) {
          await new Promise<void>((r) => (this.wanted = r));
        }
      }
    } while (this.overflowed);
    const heard = this.buffered;
    this.buffered = [];
    this.mode = 'live';
    for (const e of heard) this.deliver(e);
  }

  private checking = false;

  private beat(): void {
    this.write(frameComment(HEARTBEAT_COMMENT));
    this.recheck();
  }

  /** Asks again whether the caller's token still holds, and ends the stream if not. */
  private recheck(): void {
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
    this.write(frameEvent('end', JSON.stringify({ reason })));
    this.close();
  }

  private write(chunk: string): void {
    if (this.mode === 'closed' || this.body.destroyed) return;
    this.body.push(chunk);
    if (this.body.readableLength > this.limits.bufferBytes) {
      // The client has stopped reading: drop it rather than hold its backlog in memory.
      this.log.debug({ user: this.user, waiting: this.body.readableLength }, 'stream reader too slow; closing');
      this.close(true);
    }
  }
}
