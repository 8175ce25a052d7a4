/**
 * A Postbox server as a library: storage → hub → app, built ({@link buildServer}) or built
 * and listening ({@link startServer}). `main.ts` wraps it in a process (signals, exit
 * codes); an embedder or a test calls it directly.
 */
import type { Logger } from 'pino';
import { buildApp, type PostboxApp } from './app.js';
import type { Config } from './config.js';
import { nonconformingIds, nonconformingNotice } from './domain/users.js';
import { Hub } from './realtime/hub.js';
import { WebhookDispatcher } from './webhooks/dispatcher.js';
import { openStorage } from './storage/open.js';
import { Retention, retentionEnabled } from './storage/retention.js';
import { acquireServeLock, type ServeLock } from './storage/sqlite/serve-lock.js';
import type { Storage } from './storage/storage.js';

/** A server's parts, wired together but not listening. */
export interface PostboxServer {
  app: PostboxApp;
  storage: Storage;
  hub: Hub;
  /** Background pruning, when POSTBOX_RETENTION or POSTBOX_INBOX_LIMIT is set. */
  retention: Retention | undefined;
  /** Delivers webhooks from the outbox; {@link startServer} starts it. */
  webhooks: WebhookDispatcher;
  /**
   * Closes the app (ending streams, letting in-flight requests finish for up to
   * `shutdownGraceSeconds`, then cutting off whatever connections remain: a client stalled
   * mid-body), then storage, in every case. Idempotent.
   */
  close(): Promise<void>;
}

/** A listening server. */
export interface RunningServer extends PostboxServer {
  /** The address it listens on, e.g. `http://127.0.0.1:8080`. */
  url: string;
}

/**
 * Opens the store `config` names, wires its events to a hub and builds the app on them,
 * without listening: what `app.inject()` needs, and the first half of {@link startServer}.
 */
export async function buildServer(config: Config, logger: Logger): Promise<PostboxServer> {
  // One server per SQLite file (serve-lock.ts): refused before anything is opened.
  const lock: ServeLock | undefined = config.database.kind === 'sqlite' ? acquireServeLock(config.database.path) : undefined;
  let storage: Storage;
  try {
    storage = await openStorage(config.database, {
      durability: config.durability, poolSize: config.pgPoolSize, logger: logger.child({ component: 'storage' }), checkOnOpen: true,
    });
  } catch (err) {
    lock?.release();
    throw err;
  }
  const hub = new Hub(logger);
  const webhooks = new WebhookDispatcher(storage.webhooks, {
    allowPrivate: config.webhookAllowPrivate,
    retentionMs: config.webhookRetentionHours * 3600_000,
    logger: logger.child({ component: 'webhooks' }),
  });
  storage.onEvents((events) => hub.publish(events));
  // A commit that wrote deliveries (any event type, user.created too): look now rather
  // than at the next poll; commits that wrote none do not wake it.
  storage.webhooks.onDeliveries(() => webhooks.wake());
  const policy = { maxAgeMs: config.retentionMs, inboxLimit: config.inboxLimit };
  const retention = retentionEnabled(policy)
    ? new Retention(storage, policy, { logger: logger.child({ component: 'retention' }) })
    : undefined;
  let app: PostboxApp;
  try {
    app = await buildApp({ config, storage, hub, logger, retention });
  } catch (err) {
    await retention?.stop();
    await storage.close();
    lock?.release();
    throw err;
  }
  retention?.start();
  let closing: Promise<void> | undefined;
  return {
    app, storage, hub, retention, webhooks,
    close: () => (closing ??= (async () => {
      const cutOff = setTimeout(() => {
        logger.warn({ graceSeconds: config.shutdownGraceSeconds }, 'closing: grace period over; cutting off the remaining connections');
        app.server.closeAllConnections();
      }, config.shutdownGraceSeconds * 1000);
      try {
        await retention?.stop();
        await app.close();
        await webhooks.close();
      } finally {
        clearTimeout(cutOff);
        try {
          await storage.close();
        } finally {
          lock?.release();
        }
      }
    })()),
  };
}

/**
 * Logs the stored user ids that today's id rule refuses (created under an older one), so an
 * operator learns of them; they are not changed or deleted. Users, reserved ids, senders
 * and recipients: the last two walked through their indexes, id to id, so the cost follows
 * the number of ids, not of messages; it runs after listening, holding nothing up.
 */
async function reportNonconformingIds(storage: Storage, logger: Logger): Promise<void> {
  try {
    const odd = await nonconformingIds(storage.storedUserIds());
    if (odd.length > 0) logger.warn({ ids: odd }, nonconformingNotice(odd.length));
  } catch (err) {
    logger.warn({ err }, 'could not list the stored user ids to check them');
  }
}

/** Builds a server for `config` and listens on its host and port; resolves once it listens. */
export async function startServer(config: Config, logger: Logger): Promise<RunningServer> {
  const server = await buildServer(config, logger);
  try {
    const url = await server.app.listen({ port: config.port, host: config.host });
    logger.info({ url, storage: server.storage.kind, auth: config.auth, durability: config.durability }, `Postbox listening on ${url}`);
    void reportNonconformingIds(server.storage, logger);
    server.webhooks.start();
    return { ...server, url };
  } catch (err) {
    await server.close().catch(() => undefined);
    throw err;
  }
}
