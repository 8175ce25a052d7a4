/**
 * `postbox`: the server as a library, for embedding it in another program.
 *
 * The usual path is `loadConfig()` → `startServer(config, logger)`; `buildServer` gives the
 * same parts without listening (for `app.inject()`), and `buildApp` builds only the HTTP app
 * over a store and hub the embedder opened itself (`openStorage`, `Hub`). The wire types and
 * the error catalogue are what a caller matches answers against; the HTTP client is the
 * separate entry `postbox/client`.
 *
 * Importing this module starts nothing.
 *
 * @example
 * ```ts
 * import { loadConfig, startServer, createLogger } from 'postbox';
 * const config = loadConfig({ env: { DATABASE_URL: 'sqlite:./postbox.db', PORT: '0' } });
 * const server = await startServer(config, createLogger(config.logLevel));
 * console.log(server.url);
 * await server.close();
 * ```
 */

/** Building and running a server. */
export { buildServer, startServer, type PostboxServer, type RunningServer } from './server.js';
export { buildApp, type AppDeps, type PostboxApp } from './app.js';

/** Settings: the one reader of the environment and flags. */
export { ConfigError, loadConfig, type Config, type ConfigSource, type LogLevel, type StorageLocation } from './config.js';
export { createLogger } from './logger.js';

/** Storage and the in-process event hub a server is built from. */
export { migrateStore, openStorage, type OpenOptions } from './storage/open.js';
export type { Storage, StoreEvent, StoreListener } from './storage/storage.js';
export { Hub } from './realtime/hub.js';

/** The error catalogue: every problem's stable code, status and title. */
export { AppError, ERROR_CATALOG, problemType, type ErrorCode, type FieldError } from './errors.js';

/** The wire: what every answer and stream event looks like. */
export type * from './protocol/types.js';
export * from './protocol/events.js';

/** The package's version, as in package.json. */
export { packageVersion } from './version.js';
