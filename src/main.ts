/**
 * The server process: config → storage → hub → buildApp → listen, and a graceful close on
 * SIGINT/SIGTERM. Importing this module does nothing; `postbox serve` (what `npm start`
 * runs) calls {@link runServer}.
 */
import type { Logger } from 'pino';
import { buildApp, type PostboxApp } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { createLogger } from './logger.js';
import { Hub } from './realtime/hub.js';
import { openStorage } from './storage/open.js';
import { WebhookDispatcher } from './webhooks/dispatcher.js';
import type { Storage } from './storage/storage.js';

/** A listening server and how to stop it. */
export interface RunningServer {
  app: PostboxApp;
  storage: Storage;
  hub: Hub;
  /** The address it listens on, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** Stops accepting, lets in-flight requests finish, then closes storage. */
  close(): Promise<void>;
}

/** Starts a server for `config`; resolves once it listens. */
export async function startServer(config: Config, logger: Logger): Promise<RunningServer> {
  const storage = await openStorage(config.database, {
    durability: config.durability, poolSize: config.pgPoolSize, logger: logger.child({ component: 'storage' }),
  });
  const hub = new Hub(logger);
  const dispatcher = new WebhookDispatcher(storage.webhooks, {
    allowPrivate: config.webhookAllowPrivate,
    retentionMs: config.webhookRetentionHours * 3600_000,
    logger: logger.child({ component: 'webhooks' }),
  });
  storage.onEvents((events) => {
    hub.publish(events);
    dispatcher.wake();
  });
  let app: PostboxApp | undefined;
  try {
    app = await buildApp({ config, storage, hub, logger });
    const url = await app.listen({ port: config.port, host: config.host });
    logger.info({ url, storage: storage.kind, auth: config.auth, durability: config.durability }, `Postbox listening on ${url}`);
    dispatcher.start();
    let closing: Promise<void> | undefined;
    const built = app;
    return {
      app: built, storage, hub, url,
      close: () => (closing ??= (async () => {
        await built.close();
        await dispatcher.close();
        await storage.close();
      })()),
    };
  } catch (err) {
    await app?.close().catch(() => undefined);
    await storage.close();
    throw err;
  }
}

/** How long a graceful close may take before the process exits anyway. */
const CLOSE_GRACE_MS = 10_000;

/**
 * `postbox serve`: reads settings, starts, and closes gracefully on SIGINT or SIGTERM
 * (a second signal exits at once). Resolves with the process exit code once closed.
 */
export async function runServer(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Promise<number> {
  let config: Config;
  try {
    config = loadConfig({ argv, env });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`postbox: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const logger = createLogger(config.logLevel, { pretty: process.stdout.isTTY });
  let server: RunningServer;
  try {
    server = await startServer(config, logger);
  } catch (err) {
    logger.fatal({ err }, 'could not start');
    return 1;
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting now');
        process.exit(130);
      }
      stopping = true;
      logger.info({ signal }, 'closing: finishing in-flight requests');
      const timer = setTimeout(() => {
        logger.error('graceful close took too long; exiting');
        process.exit(1);
      }, CLOSE_GRACE_MS);
      timer.unref();
      server.close().then(
        () => {
          logger.info('closed');
          resolve(0);
        },
        (err: unknown) => {
          logger.error({ err }, 'error while closing');
          resolve(1);
        },
      );
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
