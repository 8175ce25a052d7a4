/**
 * The server process: config → {@link startServer} (storage → hub → buildApp → listen), and a
 * graceful close on SIGINT/SIGTERM. Importing this module does nothing; `postbox serve`
 * (what `npm start` runs) calls {@link runServer}.
 */
import type { CliIO } from './cli/cli.js';
import { explainOpenFailure } from './cli/store-open.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { createLogger } from './logger.js';
import { startServer, type RunningServer } from './server.js';
import { StoreInUseError } from './storage/sqlite/serve-lock.js';

/**
 * How long past the grace period a close may still take (storage finishing its last
 * writes) before the process exits anyway.
 */
const CLOSE_MARGIN_MS = 5_000;

/**
 * `postbox serve`: reads settings, starts, and closes gracefully on SIGINT or SIGTERM
 * (a second signal exits at once). Resolves with the process exit code once closed.
 */
export async function runServer(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  io: Pick<CliIO, 'stderr'> = { stderr: (t) => process.stderr.write(t) },
): Promise<number> {
  let config: Config;
  try {
    config = loadConfig({ argv, env });
  } catch (err) {
    if (err instanceof ConfigError) {
      io.stderr(`postbox: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const logger = createLogger(config.logLevel, { pretty: process.stdout.isTTY });
  let server: RunningServer;
  try {
    server = await startServer(config, logger);
  } catch (err) {
    // A setup mistake (another server on the file, a PostgreSQL database not created yet),
    // not a crash: one sentence saying what to do, no stack.
    const setup = err instanceof StoreInUseError ? err.message : explainOpenFailure(config.database, err);
    if (setup !== undefined) {
      logger.fatal(setup);
      io.stderr(`postbox: ${setup}\n`);
      return 1;
    }
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
