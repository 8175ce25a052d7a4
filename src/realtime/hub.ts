/**
 * The hub: in-process fan-out of committed changes, keyed by user.
 *
 * Storage tells the hub after each commit, in commit order (PostgreSQL does so for the
 * commits of every instance on the database, this one's included, as LISTEN/NOTIFY delivers
 * them); long-polls and streams listen here. Nothing in the hub reads storage.
 */
import type { Logger } from 'pino';
import type { InboxWatch, InboxWaiter } from '../domain/messages.js';
import type { StoreEvent } from '../storage/storage.js';

/** A listener for one user's events. */
export type HubListener = (event: StoreEvent) => void;

/** The users an event concerns; `null` for everyone. */
function audience(event: StoreEvent): string[] | null {
  switch (event.type) {
    case 'resync': return null;
    // The sender too: a stream may carry what its user sends (from another tab or device).
    case 'message': {
      const { fromUser, toUser } = event.message;
      return fromUser === toUser ? [toUser] : [toUser, fromUser];
    }
    case 'deleted': return event.fromUser === event.toUser ? [event.toUser] : [event.toUser, event.fromUser];
    // The reader, and the senders for their read receipts.
    case 'read': return [...new Set([event.user, ...event.senders])];
    case 'user-removed':
    case 'tokens-revoked': return [event.user];
  }
}

/** See the module comment. */
export class Hub implements InboxWaiter {
  private readonly subscribers = new Map<string, Set<HubListener>>();
  private readonly waiting = new Set<() => void>();
  private count = 0;
  private closed = false;

  constructor(private readonly log?: Pick<Logger, 'error'>) {}

  /** Delivers committed events to everyone listening for the users they concern. */
  publish(events: readonly StoreEvent[]): void {
    for (const event of events) {
      const users = audience(event);
      for (const user of users ?? [...this.subscribers.keys()]) {
        const set = this.subscribers.get(user);
        if (!set) continue;
        for (const listener of set) {
          try {
            listener(event);
          } catch (err) {
            // One broken listener must not stop delivery to the others.
            this.log?.error({ err, user }, 'hub listener failed');
          }
        }
      }
    }
  }

  /** Listens for a user's events until the returned function is called. */
  subscribe(user: string, listener: HubListener): () => void {
    let set = this.subscribers.get(user);
    if (!set) {
      set = new Set();
      this.subscribers.set(user, set);
    }
    set.add(listener);
    this.count++;
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      this.count--;
      set.delete(listener);
      if (set.size === 0 && this.subscribers.get(user) === set) this.subscribers.delete(user);
    };
  }

  /** Ends every wait now and every later one at once: the server is shutting down. */
  close(): void {
    this.closed = true;
    for (const stop of [...this.waiting]) stop();
  }

  /** Listeners registered now, across all users. */
  get listeners(): number {
    return this.count;
  }

  /** Listeners registered now for one user. */
  listenersOf(user: string): number {
    return this.subscribers.get(user)?.size ?? 0;
  }

  /** Arms a watch for new messages to `user` (see {@link InboxWaiter}). */
  watch(user: string): InboxWatch {
    let arrived = false;
    let wake: (() => void) | undefined;
    const waiting = this.waiting;
    const closed = () => this.closed;
    const unsubscribe = this.subscribe(user, (event) => {
      // After a resync something may have arrived unheard: wake and look. What the user
      // sent is heard here too, and is no arrival.
      if (event.type === 'message' ? event.message.toUser !== user : event.type !== 'resync') return;
      arrived = true;
      wake?.();
    });
    return {
      next(timeoutMs, signal) {
        if (arrived) {
          arrived = false;
          return Promise.resolve(true);
        }
        if (closed()) return Promise.resolve(false);
        return new Promise<boolean>((resolve) => {
          const done = (value: boolean) => {
            clearTimeout(timer);
            signal?.removeEventListener('abort', onAbort);
            waiting.delete(onAbort);
            wake = undefined;
            arrived = false;
            resolve(value);
          };
          const onAbort = () => done(false);
          const timer = setTimeout(() => done(false), timeoutMs);
          wake = () => done(true);
          waiting.add(onAbort);
          if (signal?.aborted) done(false);
          else signal?.addEventListener('abort', onAbort, { once: true });
        });
      },
      close: unsubscribe,
    };
  }
}
