/**
 * Postbox in-process for a test: the app built over a fresh SQLite file in its own
 * temporary directory, answered through `app.inject()` (no socket, no port). A test that
 * needs a real connection (a stream, a long-poll cut by the client) calls `listen()`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import type http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { loadConfig, type Config } from '../../src/config.js';
import { buildServer, type PostboxServer } from '../../src/server.js';
import type { RawRequest, RawResponse } from './http.js';

/** Makes a fresh temporary directory for a test. */
export function tempDir(prefix = 'postbox-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** The settings of a test server: `env` (and flags, `argv`) over defaults that listen on 127.0.0.1:0 with a SQLite file in `dir`. */
export function testConfig(dir: string, env: Record<string, string> = {}, argv: readonly string[] = []): Config {
  return loadConfig({
    argv,
    env: {
      PORT: '0',
      HOST: '127.0.0.1',
      DATABASE_URL: `sqlite:${join(dir, 'postbox.db')}`,
      LOG_LEVEL: 'info',
      ...env,
    },
  });
}

/** A logger whose lines a test can read back, parsed. */
export function capturingLogger(level: Config['logLevel']): { logger: Logger; logs: Record<string, unknown>[] } {
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level }, sink), logs };
}

/** An app for one test. */
export interface TestApp extends PostboxServer {
  config: Config;
  dir: string;
  /** Log lines the app wrote, parsed. */
  logs: Record<string, unknown>[];
  /** One request through `inject`; the method defaults to POST with a body, GET without. */
  request(path: string, options?: RawRequest): Promise<RawResponse>;
  /** Sends JSON with `Content-Type: application/json`. */
  postJson(path: string, body: unknown, headers?: Record<string, string>): Promise<RawResponse>;
  /** Listens on 127.0.0.1, port 0 (once), for what needs a socket; resolves with the base URL. */
  listen(): Promise<string>;
  /** Closes the app and storage and removes the directory. */
  stop(): Promise<void>;
}

/** Builds an app with `env` over the test defaults, over a fresh SQLite file (or the one in `options.dir`). */
export async function buildTestApp(env: Record<string, string> = {}, options: { dir?: string } = {}): Promise<TestApp> {
  const dir = options.dir ?? (await tempDir());
  const config = testConfig(dir, env);
  const { logger, logs } = capturingLogger(config.logLevel);
  const server = await buildServer(config, logger);
  let listening: Promise<string> | undefined;
  const request = async (path: string, opts: RawRequest = {}): Promise<RawResponse> => {
    const res = await server.app.inject({
      method: (opts.method ?? (opts.body === undefined ? 'GET' : 'POST')) as 'GET',
      url: path,
      headers: opts.headers ?? {},
      ...(opts.body === undefined ? {} : { payload: opts.body }),
    });
    return {
      status: res.statusCode,
      headers: res.headers as http.IncomingHttpHeaders,
      text: res.body,
      json: <T>() => JSON.parse(res.body) as T,
    };
  };
  return {
    ...server,
    config,
    dir,
    logs,
    request,
    postJson: (path, body, headers = {}) => request(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    }),
    listen: () => (listening ??= server.app.listen({ port: 0, host: '127.0.0.1' })),
    async stop() {
      await server.close();
      if (!options.dir) await rm(dir, { recursive: true, force: true });
    },
  };
}
