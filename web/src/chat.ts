/**
 * The signed-in user's messages as the app shows them, kept live: the conversation list, the
 * loaded pages of each conversation, sends in flight or failed, and the tab's one stream.
 *
 * No UI here: components read the fields and call the methods; every change calls the
 * listeners. Everything goes through `postbox/client`.
 */
import {
  PostboxError, type Conversation, type Message, type PostboxClient, type StreamEvent, type Subscription,
} from '../../src/client/index.js';
import { sentence } from './words.js';

/** A send the server has not confirmed: in flight, or failed with a reason and a retry. */
export interface PendingSend {
  /** The `Idempotency-Key`: a retry reuses it, so the message can never be stored twice. */
  key: string;
  text: string;
  state: 'sending' | 'failed';
  reason?: string;
  /**
   * A `sent` event with this send's text that came while the send was unconfirmed: most
   * likely its own echo (a failed send may still have been stored, its answer lost), held
   * back so that the view does not show it twice. A confirmed send or retry merges it by id
   * (one message, or two if another tab sent the same text); discarding the send shows it.
   */
  echo?: Message;
}

/** One conversation's loaded messages. */
export interface ConversationView {
  /** Oldest first, by id. */
  messages: Message[];
  /** Cursor for older messages; null when the start is loaded. */
  older: string | null;
  loadingOlder: boolean;
  pending: PendingSend[];
  /** The newest page has been read at least once. */
  loaded: boolean;
  /** A load that failed, as a sentence. */
  problem?: string;
}

/** What the stream connection is doing, as shown in the header. */
export type Connection = 'connecting' | 'live' | 'reconnecting';

const PAGE = 30;
/** Conversations per page of the list. */
const LIST_PAGE = 200;

/** A key no other send will have; `crypto.randomUUID` needs a secure context, plain HTTP has none. */
function newKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `web-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

const byId = (a: Message, b: Message) => Number(a.id) - Number(b.id);

/** See the module comment. */
export class Chat {
  conversations: Conversation[] = [];
  /** More conversations exist past the list (its `next`). */
  moreConversations = false;
  /** Older conversations are being read. */
  loadingOlderConversations = false;
  readonly views = new Map<string, ConversationView>();
  connection: Connection = 'connecting';
  /** Why the stream is not live, as a sentence, if it said. */
  connectionProblem: string | undefined;
  /** A load of the list that failed, as a sentence. */
  listProblem: string | undefined;
  /** The conversation on screen, if any. */
  openPeer: string | undefined;

  private readonly listeners = new Set<() => void>();
  private subscription: Subscription | undefined;
  private opened = 0;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly marking = new Set<string>();
  /** The list's `next`: the `before` of the page after what is loaded. */
  private conversationsNext: string | null = null;
  /** Pages past the first were loaded: a reload of the first page must keep them. */
  private olderConversationsLoaded = false;
  /**
   * Conversations loaded before a reconnect and not on screen since: the stream does not
   * replay deletes and read times, so each is read afresh when next opened.
   */
  private readonly stale = new Set<string>();
  private stopped = false;

  constructor(
    private readonly client: PostboxClient,
    /** The signed-in user. */
    readonly me: string,
    /** Called when the session cannot go on (token revoked, user removed), with the reason. */
    private readonly onSignedOut: (reason: string) => void,
    /** Called for a message that arrived while the tab is hidden. */
    private readonly onNotify: (message: Message) => void = () => undefined,
  ) {}

  /** Calls `listener` after every change; returns the function that stops it. */
  listen(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }

  /** Messages to the user not yet read, across conversations: the document title's count. */
  get unreadTotal(): number {
    return this.conversations.reduce((n, c) => n + c.unread, 0);
  }

  /**
   * Opens the tab's one stream, then loads the list. The stream starts first and learns the
   * newest id before the list is read, so a message arriving in between is on one or both,
   * and merging by id shows it once.
   */
  start(): void {
    this.subscription = this.client.subscribe(this.me, {
      // What this user sends from another tab or device shows here live too.
      sent: true,
      onMessage: (m) => this.arrived(m),
      onSent: (m) => this.sentElsewhere(m),
      onEvent: (e) => this.streamEvent(e),
      reconnect: { minMs: 250, maxMs: 10_000 },
    });
    this.subscription.closed.then(
      () => undefined,
      (err: unknown) => {
        if (this.stopped) return;
        this.onSignedOut(err instanceof PostboxError && err.status === 401 ? sentence(err) : `The live connection was refused: ${sentence(err)}`);
      },
    );
    void this.loadConversations();
  }

  /** Closes the stream; the object is done with. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.refreshTimer);
    this.subscription?.close();
  }

  /** The network changed (went off or came back): connect again now, resuming by the last id. */
  reconnect(): void {
    this.subscription?.reconnect();
  }

  /** The tab was shown: what is on screen is now read. */
  shown(): void {
    void this.markOpenRead();
  }

  // ---- the list -------------------------------------------------------------------------

  /**
   * Reads the first page of the conversation list again. Older pages the person loaded stay:
   * what lies past the new first page keeps its entries and its cursor.
   */
  async loadConversations(): Promise<void> {
    try {
      const list = await this.client.conversations(this.me, { limit: LIST_PAGE });
      if (this.olderConversationsLoaded && list.next !== null) {
        const edge = Number(list.next);
        const inPage = new Set(list.conversations.map((c) => c.peer));
        const beyond = this.conversations.filter((c) => !inPage.has(c.peer) && Number(c.lastMessage.id) < edge);
        this.conversations = [...list.conversations, ...beyond];
      } else {
        this.conversations = list.conversations;
        this.conversationsNext = list.next;
        this.olderConversationsLoaded = false;
      }
      this.moreConversations = this.conversationsNext !== null;
      this.listProblem = undefined;
    } catch (err) {
      if (this.authFailed(err)) return;
      this.listProblem = sentence(err);
    }
    this.changed();
  }

  /** Loads the page of the list past what is loaded (the API's `before`/`next`). */
  async loadOlderConversations(): Promise<void> {
    const before = this.conversationsNext;
    if (this.loadingOlderConversations || before === null) return;
    this.loadingOlderConversations = true;
    this.changed();
    try {
      const list = await this.client.conversations(this.me, { before, limit: LIST_PAGE });
      const known = new Set(this.conversations.map((c) => c.peer));
      this.conversations = [...this.conversations, ...list.conversations.filter((c) => !known.has(c.peer))];
      this.conversationsNext = list.next;
      this.moreConversations = list.next !== null;
      this.olderConversationsLoaded = true;
      this.listProblem = undefined;
    } catch (err) {
      if (!this.authFailed(err)) this.listProblem = sentence(err);
    } finally {
      this.loadingOlderConversations = false;
      this.changed();
    }
  }

  /** Reloads the list soon, once for a burst of events. */
  private refreshSoon(): void {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => void this.loadConversations(), 150);
  }

  /** Puts `message` at the top of its conversation's entry. */
  private touch(peer: string, message: Message, unreadDelta: number): void {
    const old = this.conversations.find((c) => c.peer === peer);
    const newer = !old || Number(message.id) >= Number(old.lastMessage.id);
    const entry: Conversation = {
      peer,
      lastMessage: newer ? message : old.lastMessage,
      unread: Math.max(0, (old?.unread ?? 0) + unreadDelta),
    };
    this.conversations = [entry, ...this.conversations.filter((c) => c.peer !== peer)]
      .sort((a, b) => Number(b.lastMessage.id) - Number(a.lastMessage.id));
  }

  // ---- one conversation -----------------------------------------------------------------

  /** The view of `peer`, made empty if new. */
  view(peer: string): ConversationView {
    let v = this.views.get(peer);
    if (!v) {
      v = { messages: [], older: null, loadingOlder: false, pending: [], loaded: false };
      this.views.set(peer, v);
    }
    return v;
  }

  /** Shows `peer`'s conversation (undefined: none), loading its newest page the first time. */
  async open(peer: string | undefined): Promise<void> {
    this.openPeer = peer;
    this.changed();
    if (peer === undefined) return;
    const v = this.view(peer);
    const stale = this.stale.delete(peer);
    if (!v.loaded || v.problem || stale) await this.loadNewest(peer, stale);
    await this.markOpenRead();
  }

  /**
   * Reads the newest page of `peer` and merges it into what is loaded. `fresh` (a stale view)
   * drops the older pages too: they may hold deletes and read times missed while away.
   */
  private async loadNewest(peer: string, fresh = false): Promise<void> {
    const v = this.view(peer);
    try {
      const page = await this.client.conversation(this.me, peer, { before: 'latest', limit: PAGE });
      const first = Number(page.messages[0]?.id ?? Infinity);
      const last = Number(page.messages[page.messages.length - 1]?.id ?? Infinity);
      if (!v.loaded || fresh) v.older = page.next;
      v.loaded = true;
      // Within the page's range the page is the truth (deletes, read times). Older messages
      // stay, and so do newer ones: the stream may have delivered them while this was read.
      const kept = v.messages.filter((m) => (Number(m.id) < first && !fresh) || Number(m.id) > last);
      v.messages = merge(kept, page.messages);
      v.problem = undefined;
    } catch (err) {
      if (this.authFailed(err)) return;
      v.problem = sentence(err);
    }
    this.changed();
  }

  /** Loads the page before the oldest loaded message. */
  async loadOlder(peer: string): Promise<void> {
    const v = this.view(peer);
    if (v.loadingOlder || v.older === null) return;
    v.loadingOlder = true;
    this.changed();
    let loaded = false;
    try {
      const page = await this.client.conversation(this.me, peer, { before: v.older, limit: PAGE });
      v.messages = merge(page.messages, v.messages);
      v.older = page.next;
      v.problem = undefined;
      loaded = true;
    } catch (err) {
      if (!this.authFailed(err)) v.problem = sentence(err);
    } finally {
      v.loadingOlder = false;
      this.changed();
    }
    // An older page of the open conversation is now in view: its unread messages are read
    // too, or a conversation with more unread than one page would never reach zero.
    if (loaded && this.openPeer === peer) await this.markOpenRead();
  }

  /** Marks what the open conversation shows as read, while the tab is visible. */
  async markOpenRead(): Promise<void> {
    const peer = this.openPeer;
    if (peer === undefined || document.visibilityState !== 'visible') return;
    const ids = this.view(peer).messages
      .filter((m) => m.toUser === this.me && m.fromUser === peer && m.readAt === null && !this.marking.has(m.id))
      .map((m) => m.id);
    if (ids.length === 0) return;
    for (const id of ids) this.marking.add(id);
    try {
      const result = await this.client.markRead(this.me, { ids });
      const now = new Date().toISOString();
      this.setRead(ids, now);
      const entry = this.conversations.find((c) => c.peer === peer);
      if (entry) entry.unread = Math.max(0, entry.unread - result.marked);
      this.changed();
    } catch (err) {
      // Not shown: the messages stay unread and are marked at the next chance.
      this.authFailed(err);
    } finally {
      for (const id of ids) this.marking.delete(id);
    }
  }

  // ---- sending and deleting ---------------------------------------------------------------

  /** Sends `text` to `peer`; a failure stays in the view with its reason. */
  async send(peer: string, text: string): Promise<void> {
    const pending: PendingSend = { key: newKey(), text, state: 'sending' };
    this.view(peer).pending.push(pending);
    this.changed();
    await this.attempt(peer, pending);
  }

  /** Sends a failed message again with the same `Idempotency-Key`. */
  async retry(peer: string, key: string): Promise<void> {
    const pending = this.view(peer).pending.find((p) => p.key === key);
    if (!pending || pending.state === 'sending') return;
    pending.state = 'sending';
    pending.reason = undefined;
    this.changed();
    await this.attempt(peer, pending);
  }

  /** Drops a failed send and hands back its text, to edit in the message field. */
  discard(peer: string, key: string): string {
    const v = this.view(peer);
    const pending = v.pending.find((p) => p.key === key);
    v.pending = v.pending.filter((p) => p.key !== key);
    // What the stream showed of this text was stored, this send's or another tab's: show it.
    if (pending?.echo) v.messages = merge(v.messages, [pending.echo]);
    this.changed();
    return pending?.text ?? '';
  }

  private async attempt(peer: string, pending: PendingSend): Promise<void> {
    try {
      const message = await this.client.send({ fromUser: this.me, toUser: peer, message: pending.text }, { idempotencyKey: pending.key });
      const v = this.view(peer);
      v.pending = v.pending.filter((p) => p !== pending);
      // By id: the stream's copy of this very message, if it came first, merges into one.
      v.messages = merge(v.messages, pending.echo ? [message, pending.echo] : [message]);
      this.touch(peer, message, 0);
    } catch (err) {
      if (this.authFailed(err)) return;
      pending.state = 'failed';
      pending.reason = sentence(err);
    }
    this.changed();
  }

  /** Deletes a message for both people. Answers the failure as a sentence, if any. */
  async remove(peer: string, id: string): Promise<string | undefined> {
    try {
      await this.client.deleteMessage(id);
    } catch (err) {
      if (this.authFailed(err)) return undefined;
      // Already gone is what was wanted.
      if (!(err instanceof PostboxError && err.status === 404)) return sentence(err);
    }
    this.dropMessage(id);
    this.refreshSoon();
    this.changed();
    return undefined;
  }

  // ---- live -----------------------------------------------------------------------------

  private arrived(message: Message): void {
    const peer = message.fromUser;
    const v = this.views.get(peer);
    if (v) v.messages = merge(v.messages, [message]);
    const known = this.conversations.find((c) => c.peer === peer);
    const isNew = !known || Number(known.lastMessage.id) < Number(message.id);
    const onScreen = this.openPeer === peer && document.visibilityState === 'visible';
    // A message that was also in the list's first read must not count twice.
    this.touch(peer, message, isNew && message.readAt === null ? 1 : 0);
    if (onScreen) void this.markOpenRead();
    else if (document.visibilityState !== 'visible') this.onNotify(message);
    this.changed();
  }

  /** A message this user sent, heard on the stream: from another tab or device, or this tab's own echo. */
  private sentElsewhere(message: Message): void {
    const peer = message.toUser;
    const v = this.views.get(peer);
    if (v && !v.messages.some((m) => m.id === message.id)) {
      // While this tab's own send of the same text is unconfirmed, the stream's copy is
      // likely that very message: hold it until the send is settled (see PendingSend.echo).
      const mine = v.pending.find((p) => p.echo === undefined && p.text === message.message);
      if (mine) mine.echo = message;
      else v.messages = merge(v.messages, [message]);
    }
    this.touch(peer, message, 0);
    this.changed();
  }

  private streamEvent(event: StreamEvent): void {
    switch (event.type) {
      case 'open':
        this.connection = 'live';
        this.connectionProblem = undefined;
        // After a reconnect, what the stream does not replay (read times, deletes) is read again.
        if (++this.opened > 1) {
          this.refreshSoon();
          for (const [peer, v] of this.views) if (v.loaded && peer !== this.openPeer) this.stale.add(peer);
          // What arrived while away and is now in view is read, as when the conversation is opened.
          if (this.openPeer !== undefined) void this.loadNewest(this.openPeer).then(() => this.markOpenRead());
        }
        break;
      case 'disconnected':
        this.connection = 'reconnecting';
        this.connectionProblem = event.error ? sentence(event.error) : undefined;
        break;
      case 'read':
        this.setRead(event.ids, event.readAt);
        this.refreshSoon();
        break;
      case 'receipt':
        this.setRead(event.ids, event.readAt);
        break;
      case 'deleted':
        this.dropMessage(event.id);
        this.refreshSoon();
        break;
      case 'end':
        this.onSignedOut(`The server ended this session: ${event.reason}.`);
        return;
      case 'message':
      case 'sent':
        return; // handled by onMessage and onSent
    }
    this.changed();
  }

  private setRead(ids: readonly string[], readAt: string): void {
    const set = new Set(ids);
    for (const v of this.views.values()) {
      v.messages = v.messages.map((m) => (set.has(m.id) && m.readAt === null ? { ...m, readAt } : m));
    }
  }

  private dropMessage(id: string): void {
    for (const v of this.views.values()) v.messages = v.messages.filter((m) => m.id !== id);
  }

  /** A 401 ends the session: back to sign-in with the reason. */
  private authFailed(err: unknown): boolean {
    if (err instanceof PostboxError && err.status === 401) {
      this.onSignedOut(sentence(err));
      return true;
    }
    return false;
  }
}

/** Both lists' messages, once each, oldest first. */
function merge(a: readonly Message[], b: readonly Message[]): Message[] {
  const map = new Map<string, Message>();
  for (const m of a) map.set(m.id, m);
  for (const m of b) map.set(m.id, m);
  return [...map.values()].sort(byId);
}
