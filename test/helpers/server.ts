/**
 * A real Postbox server for a test: its own temporary directory and SQLite file, listening
 * on 127.0.0.1, port 0. Each test makes its own data.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { loadConfig, type Config } from '../../src/config.js';
import { startServer, type RunningServer } from '../../src/main.js';

/** A running test server. */
export interface TestServer extends RunningServer {
  config: Config;
  dir: string;
  /** Log lines the server wrote, parsed. */
  logs: Record<string, unknown>[];
  /** Closes the server and removes its directory. */
  stop(): Promise<void>;
}

/** Makes a fresh temporary directory for a test. */
export function tempDir(prefix = 'postbox-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** Starts a server with the given environment on top of test defaults. */
export async function startTestServer(env: Record<string, string> = {}, options: { dir?: string } = {}): Promise<TestServer> {
  const dir = options.dir ?? (await tempDir());
  const config = loadConfig({
    env: {
      PORT: '0',
      HOST: '127.0.0.1',
      DATABASE_URL: `sqlite:${join(dir, 'postbox.db')}`,
      LOG_LEVEL: 'info',
      ...env,
    },
  });
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const logger = pino({ level: config.logLevel }, sink);
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
