/**
 * The webhook dispatcher: takes deliveries from the outbox and calls their endpoints, at
 * least once each, signed the Standard Webhooks way.
 *
 * - Order: an endpoint's deliveries go one at a time, oldest first; a delivery waiting for
 *   its retry holds back the ones after it.
 * - Once per attempt across instances: an endpoint is leased to one instance at a time
 *   (storage claims it with SKIP LOCKED on PostgreSQL), and the lease outlasts the attempts
 *   made under it.
 * - Independence: each leased endpoint is served on its own, and the loop leases newly due
 *   endpoints while others are still being served (up to {@link ENDPOINTS_IN_FLIGHT} at
 *   once), so a slow or dead endpoint holds up only its own deliveries. Within one
 *   dispatcher an endpoint is never served twice at once.
 * - Retries: exponential backoff with jitter, for up to 24 hours after the event; then the
 *   delivery is `failed`. An endpoint that has failed every attempt for 24 hours is disabled,
 *   with the reason on it.
 * - At least once: a crash after the call and before its result is recorded means the call
 *   is made again (the receiver deduplicates by `webhook-id`).
 *
 * The clock, the randomness and the caller are injected, so tests drive retries without
 * waiting for them.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { signWebhook, webhookMessageId } from '../protocol/webhooks.js';
import type { StoredDelivery, StoredWebhook, WebhookStore } from '../storage/webhooks.js';
import { postWebhook, type CallResult } from './destination.js';

/** How long an event is retried before its delivery is `failed`, and an endpoint failing before it is disabled. */
export const GIVE_UP_MS = 24 * 60 * 60 * 1000;
/** How long one call may take, unless {@link DispatcherOptions.callTimeoutMs} says otherwise. */
export const CALL_TIMEOUT_MS = 10_000;
/** How long an endpoint stays leased; attempts stop well before it runs out. */
const LEASE_MS = 60_000;
/** Endpoints served at once by one dispatcher, and calls per endpoint per lease. */
const ENDPOINTS_IN_FLIGHT = 16;
const CALLS_PER_LEASE = 50;
/** The first retry's delay, doubling each time up to {@link MAX_DELAY_MS}. */
const FIRST_DELAY_MS = 5_000;
const MAX_DELAY_MS = 60 * 60 * 1000;
/** How often delivered rows past their retention are pruned. */
const PRUNE_EVERY_MS = 60 * 60 * 1000;

/** Makes one call. */
export type WebhookCaller = (url: string, headers: Record<string, string>, body: string) => Promise<CallResult>;

/** Settings of the dispatcher. */
export interface DispatcherOptions {
  allowPrivate: boolean;
  /** How long delivered rows are kept. */
  retentionMs: number;
  logger: Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;
  /** Epoch ms. Default Date.now. */
  clock?: () => number;
  /** In [0, 1). Default Math.random. */
  random?: () => number;
  /** Default: an HTTP POST with the SSRF guard and the call timeout. */
  call?: WebhookCaller;
  /**
   * How long one call may take before it counts as failed, well under the 60 s lease (a call
   * starts only while the lease covers two). Default {@link CALL_TIMEOUT_MS}.
   */
  callTimeoutMs?: number;
  /** How often the outbox is looked at when nothing wakes the dispatcher. Default 1000 ms. */
  pollMs?: number;
}

/**
 * The wait before retry number `attempts` (1 for the first retry): 5 s doubling up to an
 * hour, each scaled by a random factor in [0.5, 1) so that endpoints that failed together
 * do not all come back at once.
 */
export function retryDelay(attempts: number, random: () => number): number {
  const base = Math.min(FIRST_DELAY_MS * 2 ** Math.min(attempts - 1, 30), MAX_DELAY_MS);
  return Math.round(base * (0.5 + random() * 0.5));
}

/** See the module comment. */
export class WebhookDispatcher {
  private readonly clock: () => number;
  private readonly random: () => number;
  private readonly call: WebhookCaller;
  private readonly callTimeoutMs: number;
  /** This instance's name on leases. */
  private readonly owner = `d_${randomBytes(8).toString('hex')}`;
  private running: Promise<void> | undefined;
  private closed = false;
  private wakeUp: (() => void) | undefined;
  private woken = false;
  private lastPrune = 0;
  /** The endpoints being served, each with the calls it will have made when it is done. */
  private readonly inFlight = new Map<string, Promise<number>>();

  constructor(private readonly store: WebhookStore, private readonly options: DispatcherOptions) {
    this.clock = options.clock ?? Date.now;
    this.random = options.random ?? Math.random;
    const timeoutMs = this.callTimeoutMs = options.callTimeoutMs ?? CALL_TIMEOUT_MS;
    this.call = options.call ?? ((url, headers, body) =>
      postWebhook(url, headers, body, { timeoutMs, allowPrivate: options.allowPrivate }));
  }

  /** Starts delivering in the background until {@link close}. */
  start(): void {
    this.running ??= this.loop();
  }

  /** Looks at the outbox now (a change committed) rather than at the next poll. */
  wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  /** Stops leasing, and waits for the calls in flight (no endpoint starts another). */
  async close(): Promise<void> {
    this.closed = true;
    this.wakeUp?.();
    await this.running;
    await Promise.all(this.inFlight.values());
  }

  /**
   * One round: leases the endpoints with a due delivery and makes their calls. Answers how
   * many calls it made once they are all done. The background loop does not wait like
   * this (see {@link lease}); tests call it directly to step the dispatcher.
   */
  async runOnce(): Promise<number> {
    const counts = await Promise.all(await this.lease());
    return counts.reduce((a, b) => a + b, 0);
  }

  /**
   * Prunes when it is time, leases as many due endpoints as there is room for, and starts
   * serving each; answers their promises without waiting for them.
   */
  private async lease(): Promise<Promise<number>[]> {
    const now = this.clock();
    if (now - this.lastPrune >= PRUNE_EVERY_MS) {
      this.lastPrune = now;
      const pruned = await this.store.pruneDelivered(now - this.options.retentionMs);
      if (pruned > 0) this.options.logger.debug({ pruned }, 'pruned delivered webhook deliveries');
    }
    const room = ENDPOINTS_IN_FLIGHT - this.inFlight.size;
    if (room <= 0) return [];
    const leased = await this.store.leaseEndpoints(this.owner, now, LEASE_MS, room);
    const started: Promise<number>[] = [];
    for (const endpoint of leased) {
      // Our own lease keeps an endpoint we serve out of the claim; this is the guard should
      // it not (a lease run out under a stalled call): never two servings of one endpoint.
      if (this.inFlight.has(endpoint.id)) continue;
      const serving = this.serve(endpoint, now + LEASE_MS)
        .catch((err: unknown) => {
          this.options.logger.warn({ err, webhook: endpoint.id }, 'serving a webhook endpoint failed; trying again');
          return 0;
        })
        .finally(() => {
          this.inFlight.delete(endpoint.id);
          // It may have more due (it stopped at its call budget or its lease), and its
          // place is free for another endpoint: look again now.
          this.wake();
        });
      this.inFlight.set(endpoint.id, serving);
      started.push(serving);
    }
    return started;
  }

  private async loop(): Promise<void> {
    while (!this.closed) {
      let started = 0;
      try {
        started = (await this.lease()).length;
      } catch (err) {
        this.options.logger.warn({ err }, 'webhook round failed; trying again');
      }
      if (this.closed) return;
      // Straight on while endpoints are being taken on; otherwise wait for a change, an
      // endpoint finishing, or the next poll.
      if (started > 0 || this.woken) {
        this.woken = false;
        continue;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.options.pollMs ?? 1000);
        timer.unref();
        this.wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeUp = undefined;
      this.woken = false;
    }
  }

  /** Delivers an endpoint's due deliveries in order, under its lease; answers the calls made. */
  private async serve(endpoint: StoredWebhook, leaseUntil: number): Promise<number> {
    let calls = 0;
    try {
      while (calls < CALLS_PER_LEASE && !this.closed) {
        // Stop while the lease still covers a whole call, so no other instance can start
        // this endpoint's next attempt while ours is under way.
        if (this.clock() + this.callTimeoutMs * 2 > leaseUntil) break;
        const delivery = await this.store.headDelivery(endpoint.id);
        if (!delivery || delivery.nextAttemptAt > this.clock()) break;
        calls++;
        const ok = await this.attempt(endpoint, delivery);
        if (!ok || !endpoint.enabled) break;
      }
    } finally {
      await this.store.releaseEndpoint(endpoint.id, this.owner).catch((err: unknown) =>
        this.options.logger.warn({ err, webhook: endpoint.id }, 'could not release a webhook lease; it runs out by itself'));
    }
    return calls;
  }

  /** One call and its record; answers whether it was delivered. */
  private async attempt(endpoint: StoredWebhook, delivery: StoredDelivery): Promise<boolean> {
    const started = this.clock();
    const headers = await signWebhook(endpoint.secret, webhookMessageId(String(delivery.id)), Math.floor(started / 1000), delivery.payload);
    let httpStatus: number | null = null;
    let error: string | null = null;
    try {
      httpStatus = (await this.call(endpoint.url, headers, delivery.payload)).status;
      if (httpStatus < 200 || httpStatus > 299) error = `answered HTTP ${httpStatus}`;
    } catch (err) {
      error = (err as Error).message || String(err);
    }
    const at = this.clock();
    if (error === null) {
      await this.store.recordAttempt(delivery.id, { at, status: 'delivered', nextAttemptAt: at, httpStatus, error });
      if (endpoint.failingSince !== null) {
        endpoint.failingSince = null;
        await this.store.updateWebhook(endpoint.id, { failingSince: null });
      }
      return true;
    }
    const attempts = delivery.attempts + 1;
    const giveUp = at - delivery.createdAt >= GIVE_UP_MS;
    await this.store.recordAttempt(delivery.id, {
      at, status: giveUp ? 'failed' : 'pending', nextAttemptAt: giveUp ? at : at + retryDelay(attempts, this.random), httpStatus, error,
    });
    this.options.logger.info({ webhook: endpoint.id, delivery: delivery.id, attempts, error, giveUp }, 'webhook call failed');
    const wasFailing = endpoint.failingSince !== null;
    endpoint.failingSince ??= at;
    if (at - endpoint.failingSince >= GIVE_UP_MS) {
      endpoint.enabled = false;
      const reason = `disabled at ${new Date(at).toISOString()}: every call failed for 24 hours since ` +
        `${new Date(endpoint.failingSince).toISOString()} (last: ${error})`;
      await this.store.updateWebhook(endpoint.id, { enabled: false, disabledReason: reason, failingSince: endpoint.failingSince });
      this.options.logger.warn({ webhook: endpoint.id, url: endpoint.url }, reason);
    } else if (!wasFailing) {
      await this.store.updateWebhook(endpoint.id, { failingSince: endpoint.failingSince });
    }
    // A failed (given-up) delivery no longer holds the queue back; the next may go.
    return giveUp;
  }
}
