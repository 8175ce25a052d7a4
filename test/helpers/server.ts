/**
 * A real, listening Postbox server for a test that needs a socket: its own temporary
 * directory and SQLite file, on 127.0.0.1, port 0. Tests that only ask and answer use
 * `buildTestApp` (app.ts) instead.
 */
import { rm } from 'node:fs/promises';
import type { Config } from '../../src/config.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { capturingLogger, tempDir, testConfig } from './app.js';

export { tempDir } from './app.js';

/** A running test server. */
export interface TestServer extends RunningServer {
  config: Config;
  dir: string;
  /** Log lines the server wrote, parsed. */
  logs: Record<string, unknown>[];
  /** Closes the server and removes its directory. */
  stop(): Promise<void>;
}

/** Starts a server with the given environment (and flags, `argv`) on top of test defaults. */
export async function startTestServer(env: Record<string, string> = {}, options: { dir?: string; argv?: readonly string[] } = {}): Promise<TestServer> {
  const dir = options.dir ?? (await tempDir());
  const config = testConfig(dir, env, options.argv);
  const { logger, logs } = capturingLogger(config.logLevel);
  const server = await startServer(config, logger);
  return {
    ...server,
    config,
    dir,
    logs,
    async stop() {
      await server.close();
      if (!options.dir) await rm(dir, { recursive: true, force: true });
    },
  };
}
