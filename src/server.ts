/**
 * A Postbox server as a library: storage → hub → app, built ({@link buildServer}) or built
 * and listening ({@link startServer}). `main.ts` wraps it in a process (signals, exit
 * codes); an embedder or a test calls it directly.
 */
import type { Logger } from 'pino';
import { buildApp, type PostboxApp } from './app.js';
import type { Config } from './config.js';
import { Hub } from './realtime/hub.js';
import { openStorage } from './storage/open.js';
import { WebhookDispatcher } from './webhooks/dispatcher.js';
import type { Storage } from './storage/storage.js';

/** A server's parts, wired together but not listening. */
export interface PostboxServer {
  app: PostboxApp;
  storage: Storage;
  hub: Hub;
  /** Delivers webhooks from the outbox; {@link startServer} starts it. */
  webhooks: WebhookDispatcher;
  /** Closes the app (ending streams, letting in-flight requests finish), then storage. Idempotent. */
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
  const storage = await openStorage(config.database, {
    durability: config.durability, poolSize: config.pgPoolSize, logger: logger.child({ component: 'storage' }),
  });
  const hub = new Hub(logger);
  const webhooks = new WebhookDispatcher(storage.webhooks, {
    allowPrivate: config.webhookAllowPrivate,
    retentionMs: config.webhookRetentionHours * 3600_000,
    logger: logger.child({ component: 'webhooks' }),
  });
  storage.onEvents((events) => {
    hub.publish(events);
    // A change may have written deliveries: look now rather than at the next poll.
    webhooks.wake();
  });
  let app: PostboxApp;
  try {
    app = await buildApp({ config, storage, hub, logger });
  } catch (err) {
    await storage.close();
    throw err;
  }
  let closing: Promise<void> | undefined;
  return {
    app, storage, hub, webhooks,
    close: () => (closing ??= (async () => {
      try {
        await app.close();
        await webhooks.close();
      } finally {
        await storage.close();
      }
    })()),
  };
}

/** Builds a server for `config` and listens on its host and port; resolves once it listens. */
export async function startServer(config: Config, logger: Logger): Promise<RunningServer> {
  const server = await buildServer(config, logger);
  try {
    const url = await server.app.listen({ port: config.port, host: config.host });
    logger.info({ url, storage: server.storage.kind, auth: config.auth, durability: config.durability }, `Postbox listening on ${url}`);
    server.webhooks.start();
    return { ...server, url };
  } catch (err) {
    await server.close().catch(() => undefined);
    throw err;
  }
}
