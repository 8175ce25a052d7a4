/**
 * The server process: config → storage → hub → buildApp → listen, and a graceful close on
 * SIGINT/SIGTERM. Importing this module does nothing; `postbox serve` (what `npm start`
 * runs) calls {@link runServer}.
 */
import type { Logger } from 'pino';
import { buildApp, type PostboxApp } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { nonconformingIds } from './domain/users.js';
import { createLogger } from './logger.js';
import { Hub } from './realtime/hub.js';
import { openStorage } from './storage/open.js';
import type { Storage } from './storage/storage.js';

/** A listening server and how to stop it. */
export interface RunningServer {
  app: PostboxApp;
  storage: Storage;
  hub: Hub;
  /** The address it listens on, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /**
   * Stops accepting, lets in-flight requests finish for up to `shutdownGraceSeconds`, then
   * cuts off whatever connections remain (a client stalled mid-body), and closes storage
   * in every case.
   */
  close(): Promise<void>;
}

/** Starts a server for `config`; resolves once it listens. */
export async function startServer(config: Config, logger: Logger): Promise<RunningServer> {
  const storage = await openStorage(config.database, {
    durability: config.durability, poolSize: config.pgPoolSize, logger: logger.child({ component: 'storage' }),
  });
  const hub = new Hub(logger);
  storage.onEvents((events) => hub.publish(events));
  let app: PostboxApp | undefined;
  try {
    app = await buildApp({ config, storage, hub, logger });
    const url = await app.listen({ port: config.port, host: config.host });
    logger.info({ url, storage: storage.kind, auth: config.auth, durability: config.durability }, `Postbox listening on ${url}`);
    void reportNonconformingUsers(storage, logger);
    let closing: Promise<void> | undefined;
    const built = app;
    return {
      app: built, storage, hub, url,
      close: () => (closing ??= (async () => {
        const cutOff = setTimeout(() => {
          logger.warn({ graceSeconds: config.shutdownGraceSeconds }, 'closing: grace period over; cutting off the remaining connections');
          built.server.closeAllConnections();
        }, config.shutdownGraceSeconds * 1000);
        try {
          await built.close();
        } finally {
          clearTimeout(cutOff);
          await storage.close();
        }
      })()),
    };
  } catch (err) {
    await app?.close().catch(() => undefined);
    await storage.close();
    throw err;
  }
}

/**
 * Logs the stored user ids that today's id rule refuses (created under an older one), so an
 * operator learns of them; they are not changed or deleted. Users only, which is cheap at
 * every start; `postbox check` also looks at every message's ids.
 */
async function reportNonconformingUsers(storage: Storage, logger: Logger): Promise<void> {
  try {
    const odd = await nonconformingIds((await storage.listUsers()).map((u) => u.id));
    if (odd.length > 0) {
      logger.warn({ ids: odd }, `${odd.length} stored user id(s) would be refused by the current id rule; ` +
        'they keep working as they are (run postbox check for ids in messages too)');
    }
  } catch (err) {
    logger.warn({ err }, 'could not list users to check their ids');
  }
}

/**
 * How long past the grace period a close may still take (storage finishing its last
 * writes) before the process exits anyway.
 */
const CLOSE_MARGIN_MS = 5_000;

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
      }, config.shutdownGraceSeconds * 1000 + CLOSE_MARGIN_MS);
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
