/**
 * The stream reader: the repo's one parser of `text/event-stream` (the WHATWG format), the
 * mapping of Postbox's events onto {@link StreamEvent}, and the reconnecting follow loop
 * behind `PostboxClient.subscribe`.
 *
 * The parser takes text chunks and knows nothing of where they come from, so the client
 * (WHATWG streams), the tests and the benchmarks (node:http) all share it. Like the rest of
 * the client it imports nothing but `../protocol/` and runs in browsers as well as Node.
 */
import type { StreamEventData, StreamEventName } from '../protocol/events.js';
import type { Message } from '../protocol/types.js';
import { PostboxConnectionError, PostboxError } from './errors.js';
import type { StreamEvent, SubscribeOptions } from './types.js';

/** One event as the wire framed it, before any meaning is given to its data. */
export interface SseEvent {
  /** The `event:` field, `message` when there was none. */
  event: string;
  /** The `id:` field of this event's block, if it had one. */
  id: string | undefined;
  /** The `data:` lines, joined by newlines. */
  data: string;
}

/**
 * An incremental `text/event-stream` parser: feed it text as it arrives, in chunks cut
 * anywhere (even between `\r` and `\n`), and it calls back once per complete event.
 */
export class SseParser {
  private pending = '';
  private name: string | undefined;
  private id: string | undefined;
  private data: string[] = [];
  /** A chunk ended on `\r`: a `\n` starting the next chunk belongs to the same line break. */
  private sawCR = false;

  /**
   * @param onEvent called with each complete event that carried data (the spec drops the rest)
   * @param onComment called with each comment line (`: keep-alive`), without the colon
   */
  constructor(
    private readonly onEvent: (event: SseEvent) => void,
    private readonly onComment?: (text: string) => void,
  ) {}

  /** Feeds the next chunk of text. */
  push(chunk: string): void {
    if (this.sawCR && chunk.startsWith('\n')) chunk = chunk.slice(1);
    this.sawCR = false;
    this.pending += chunk;
    let nl: number;
    while ((nl = this.pending.search(/\r\n|\r|\n/)) >= 0) {
      if (this.pending[nl] === '\r' && nl === this.pending.length - 1) {
        // A `\r` at the very end may be the first half of `\r\n`: end the line, remember it.
        this.sawCR = true;
        const line = this.pending.slice(0, nl);
        this.pending = '';
        this.line(line);
        return;
      }
      const line = this.pending.slice(0, nl);
      this.pending = this.pending.slice(nl + (this.pending.startsWith('\r\n', nl) ? 2 : 1));
      this.line(line);
    }
  }

  private line(line: string): void {
    if (line === '') {
      if (this.data.length > 0) this.onEvent({ event: this.name ?? 'message', id: this.id, data: this.data.join('\n') });
      this.name = undefined;
      this.id = undefined;
      this.data = [];
      return;
    }
    if (line.startsWith(':')) {
      this.onComment?.(line.slice(1).trim());
      return;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') this.name = value;
    else if (field === 'data') this.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.id = value;
  }
}

/** The {@link StreamEvent} a Postbox stream event means, or undefined for one this client does not know. */
export function toStreamEvent(raw: SseEvent): StreamEvent | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.data);
  } catch {
    return undefined;
  }
  // The shapes are the protocol's; a field missing from a newer or older server reads as empty.
  const data = <K extends StreamEventName>(_name: K) => parsed as Partial<StreamEventData[K]>;
  switch (raw.event as StreamEventName) {
    case 'message': return { type: 'message', message: parsed as Message };
    case 'sent': return { type: 'sent', message: parsed as Message };
    case 'deleted': return { type: 'deleted', id: String(data('deleted').id) };
    case 'read': {
      const d = data('read');
      return { type: 'read', ids: d.ids ?? [], readAt: String(d.readAt) };
    }
    case 'receipt': {
      const d = data('receipt');
      return { type: 'receipt', ids: d.ids ?? [], readAt: String(d.readAt), by: String(d.by) };
    }
    case 'end': return { type: 'end', reason: String(data('end').reason) };
    default: return undefined;
  }
}

/**
 * Reads a Postbox event stream body and hands each event on.
 * Resolves `'ended'` after an `end` event, `'dropped'` when the body stops otherwise.
 */
export async function readEvents(
  body: ReadableStream<Uint8Array> | null,
  signal: AbortSignal,
  on: (event: StreamEvent) => void,
): Promise<'ended' | 'dropped'> {
  if (!body) return 'dropped';
  const reader = body.getReader();
  // Streaming decode keeps a character split across chunks whole.
  const decoder = new TextDecoder();
  const cancel = () => void reader.cancel().catch(() => undefined);
  signal.addEventListener('abort', cancel, { once: true });
  let ended = false;
  const parser = new SseParser((raw) => {
    if (ended) return;
    const event = toStreamEvent(raw);
    if (!event) return;
    on(event);
    if (event.type === 'end') ended = true;
  });
  try {
    while (!ended) {
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch {
        return 'dropped';
      }
      if (chunk.done) return 'dropped';
      parser.push(decoder.decode(chunk.value, { stream: true }));
    }
    return 'ended';
  } finally {
    signal.removeEventListener('abort', cancel);
    cancel();
  }
}

/** What the follow loop needs from a client: its transport, without its other calls. */
export interface StreamSource {
  /** The URL of the stream, for errors. */
  readonly url: string;
  /** The id of the newest message in the inbox (with `sent`, or the sent box), `"0"` when both are empty. */
  newestId(signal: AbortSignal): Promise<string>;
  /** Requests the stream, resuming after `lastId`; rejects only when no answer came. */
  open(lastId: string, signal: AbortSignal): Promise<Response>;
  /** The error for a refused stream request. */
  failure(response: Response): Promise<PostboxError>;
  /** Fetches a fresh token (a client with a token provider): the stream then reconnects with it. */
  refresh?(): Promise<void>;
}

/** Where a subscription is: what `lastEventId` reads, and how to reconnect at once. */
export interface FollowState {
  lastId: string | undefined;
  /** Set while waiting to reconnect: ends the wait at once. */
  wake?: () => void;
  /** Set while connecting or connected: drops this connection, to reconnect at once. */
  drop?: () => void;
}

/** Asks a follow loop to reconnect now, whether it is connected or waiting. */
export function reconnectNow(state: FollowState): void {
  if (state.drop) state.drop();
  else state.wake?.();
}

/**
 * Follows a stream until `signal` aborts or the server ends it, reconnecting with backoff
 * and resuming after the last message delivered. See `PostboxClient.subscribe`.
 */
export async function follow(source: StreamSource, options: SubscribeOptions, signal: AbortSignal, state: FollowState): Promise<void> {
  const minDelay = options.reconnect?.minMs ?? 500;
  const maxDelay = options.reconnect?.maxMs ?? 30_000;
  let delay = minDelay;
  const emit = (event: StreamEvent) => options.onEvent?.(event);
  // Set after a fresh token was fetched, so a refusal right after it is final.
  let refreshed = false;
  // Set when the token ran out again at once: the provider is asked after the backoff.
  let refreshDue = false;
  while (!signal.aborted) {
    let wait: number;
    // This connection's own signal: the subscription's, or a drop asked for by reconnect().
    const attempt = new AbortController();
    const stopAttempt = () => attempt.abort();
    signal.addEventListener('abort', stopAttempt, { once: true });
    let dropped = false;
    state.drop = () => {
      dropped = true;
      attempt.abort();
    };
    try {
      if (refreshDue && source.refresh) {
        refreshDue = false;
        await source.refresh();
        refreshed = true;
      }
      if (state.lastId === undefined) state.lastId = await source.newestId(attempt.signal);
      let response: Response;
      try {
        response = await source.open(state.lastId, attempt.signal);
      } catch (err) {
        if (signal.aborted) return;
        throw new PostboxConnectionError(source.url, err);
      }
      if (response.status === 401 && source.refresh && !refreshed) {
        await response.body?.cancel();
        await source.refresh();
        refreshed = true;
        continue;
      }
      if (!response.ok) {
        const error = await source.failure(response);
        if (response.status !== 429 && response.status !== 503) throw error;
        emit({ type: 'disconnected', error });
        wait = Math.max(delay, retryAfterMs(response) ?? 0);
      } else {
        emit({ type: 'open' });
        const freshToken = refreshed;
        refreshed = false;
        let sawMessage = false;
        let sawAny = false;
        let endReason: string | undefined;
        const outcome = await readEvents(response.body, attempt.signal, (event) => {
          if (event.type === 'end') endReason = event.reason;
          else sawAny = true;
          if (event.type === 'message' || event.type === 'sent') {
            // One id sequence runs through both: either moves the cursor a resume starts after.
            state.lastId = event.message.id;
            sawMessage = true;
            if (event.type === 'message') options.onMessage(event.message);
            else options.onSent?.(event.message);
          }
          emit(event);
        });
        if (signal.aborted) return;
        const expired = outcome === 'ended' && endReason === 'token expired' && source.refresh !== undefined;
        // A JWT ran out: with a provider, reconnect at once with a fresh one, where it left off.
        // But a token just fetched that ran out before anything came means the provider hands
        // out stale tokens (or a server's clock is ahead): at once would be a tight loop of
        // provider calls and reconnects, so that one waits its backoff and asks again after.
        if (expired && !(freshToken && !sawAny)) {
          await source.refresh?.();
          refreshed = true;
          continue;
        }
        if (outcome === 'ended' && !expired) return;
        if (expired) refreshDue = true;
        // A stream that delivered something was healthy: start the backoff over.
        if (sawMessage) delay = minDelay;
        emit({ type: 'disconnected' });
        wait = delay;
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof PostboxError && err.status !== 429 && err.status !== 503) throw err;
      emit({ type: 'disconnected', error: err as Error });
      wait = delay;
    } finally {
      signal.removeEventListener('abort', stopAttempt);
      state.drop = undefined;
    }
    // Dropped on purpose: the network changed, so try again at once.
    if (dropped) wait = 0;
    delay = Math.min(maxDelay, delay * 2);
    // Jitter, so a server's many clients do not all come back in the same instant.
    await sleep(wait * (0.5 + Math.random() / 2), signal, state);
  }
}

/** Resolves after `ms`, at once when `signal` aborts, or when `state.wake` is called. */
function sleep(ms: number, signal: AbortSignal, state: FollowState): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    state.wake = done;
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      state.wake = undefined;
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** A `Retry-After` in seconds, as milliseconds. */
function retryAfterMs(response: Response): number | undefined {
  const seconds = Number(response.headers.get('retry-after'));
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : undefined;
}
