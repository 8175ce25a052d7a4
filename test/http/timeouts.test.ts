/**
 * Deadlines on every phase of a request, the connection bound, and a graceful stop that a
 * stalled client cannot hold open. Real sockets: the point of each case is a socket.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import { describe, it } from 'node:test';
import type { Problem } from '../../src/protocol/types.js';
import { spawnServer } from '../helpers/child.js';
import { startTestServer, tempDir } from '../helpers/server.js';
import { until } from '../helpers/wait.js';

/** A raw connection to `url` that collects what the server writes until it closes. */
async function connect(url: string): Promise<{ socket: net.Socket; received: () => string; closed: Promise<void> }> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => undefined);
  const closed = once(socket, 'close').then(() => undefined);
  await once(socket, 'connect');
  return { socket, received: () => Buffer.concat(chunks).toString('utf8'), closed };
}

/** Waits for `p` or fails the test past `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_r, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    })]);
  } finally {
    clearTimeout(timer);
  }
}

/** Splits a raw HTTP/1.1 answer into status, lower-cased headers and body. */
function parseAnswer(raw: string): { status: number; headers: Record<string, string>; body: string } {
  const [head = '', ...rest] = raw.split('\r\n\r\n');
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const i = line.indexOf(':');
    headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: rest.join('\r\n\r\n') };
}

const STALLED_POST = 'POST /post-message HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"fromUser":';

describe('request deadlines', () => {
  it('answers a body that never finishes with a 408 problem and closes the connection', async () => {
    const server = await startTestServer({ POSTBOX_REQUEST_TIMEOUT_SECONDS: '1', POSTBOX_HEADERS_TIMEOUT_SECONDS: '1' });
    try {
      const conn = await connect(server.url);
      conn.socket.write(STALLED_POST);
      await within(conn.closed, 15_000, 'the server to close a stalled body');
      const answer = parseAnswer(conn.received());
      assert.equal(answer.status, 408);
      assert.match(answer.headers['content-type'] ?? '', /application\/problem\+json/);
      assert.equal(answer.headers['x-content-type-options'], 'nosniff');
      assert.equal(answer.headers['x-frame-options'], 'DENY');
      const problem = JSON.parse(answer.body) as Problem;
      assert.equal(problem.type, '/problems/request_timeout');
      assert.equal(problem.status, 408);
      // Nothing was stored.
      const inbox = await fetch(`${server.url}/get-messages/anyone`);
      assert.deepEqual(await inbox.json(), []);
    } finally {
      await server.stop();
    }
  });

  it('answers headers that never finish with a 408 and closes', async () => {
    const server = await startTestServer({ POSTBOX_REQUEST_TIMEOUT_SECONDS: '1', POSTBOX_HEADERS_TIMEOUT_SECONDS: '1' });
    try {
      const conn = await connect(server.url);
      conn.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ');
      await within(conn.closed, 15_000, 'the server to close stalled headers');
      assert.equal(parseAnswer(conn.received()).status, 408);
    } finally {
      await server.stop();
    }
  });

  it('closes a keep-alive connection left idle past its timeout', async () => {
    const server = await startTestServer({ POSTBOX_KEEPALIVE_TIMEOUT_SECONDS: '1' });
    try {
      const conn = await connect(server.url);
      conn.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      await within(conn.closed, 15_000, 'the server to close an idle keep-alive connection');
      assert.equal(parseAnswer(conn.received()).status, 200);
    } finally {
      await server.stop();
    }
  });

  it('holds no more connections than POSTBOX_MAX_CONNECTIONS', async () => {
    const server = await startTestServer({ POSTBOX_MAX_CONNECTIONS: '2' });
    const conns: Awaited<ReturnType<typeof connect>>[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const c = await connect(server.url);
        c.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
        conns.push(c);
      }
      await until(() => conns.every((c) => c.received().includes('\r\n\r\n')), 'two answers');
      const third = await connect(server.url);
      conns.push(third);
      third.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      await within(third.closed, 15_000, 'the third connection to be refused');
      assert.equal(third.received(), '', 'the connection over the bound gets no answer');
    } finally {
      for (const c of conns) c.socket.destroy();
      await server.stop();
    }
  });
});

describe('graceful stop', () => {
  it('answers requests that arrive while stopping with the 503 problem, and does not wait on a stalled client past the grace', async () => {
    const server = await startTestServer({ POSTBOX_SHUTDOWN_GRACE_SECONDS: '1', POSTBOX_REQUEST_TIMEOUT_SECONDS: '600' });
    let stopped = false;
    try {
      const stalled = await connect(server.url);
      stalled.socket.write(STALLED_POST);
      // A request under way (headers begun) is not an idle connection the stop may drop.
      const late = await connect(server.url);
      late.socket.write('GET /get-messages/x HTTP/1.1\r\nHost: 127.0.0.1\r\n');
      const closing = server.close().then(() => {
        stopped = true;
      });
      await until(() => !server.app.server.listening, 'the server to stop listening');
      late.socket.write('\r\n');
      await within(late.closed, 15_000, 'the answer during the stop');
      const answer = parseAnswer(late.received());
      assert.equal(answer.status, 503);
      assert.match(answer.headers['content-type'] ?? '', /application\/problem\+json/);
      assert.ok(Number(answer.headers['retry-after']) >= 1, 'Retry-After');
      assert.equal(answer.headers['x-content-type-options'], 'nosniff');
      assert.equal(answer.headers['x-frame-options'], 'DENY');
      assert.equal((JSON.parse(answer.body) as Problem).type, '/problems/server_busy');
      await within(closing, 15_000, 'the close to finish despite the stalled body');
      await within(stalled.closed, 15_000, 'the stalled connection to be cut');
      await assert.rejects(server.storage.ping(), { message: /closed/ }, 'storage is closed');
    } finally {
      if (!stopped) await server.close();
      await server.stop();
    }
  });

  it('exits 0 on SIGTERM with a stalled client connected, having closed storage', async () => {
    const dir = await tempDir();
    const child = await spawnServer({
      DATABASE_URL: `sqlite:${dir}/postbox.db`, POSTBOX_SHUTDOWN_GRACE_SECONDS: '1', POSTBOX_REQUEST_TIMEOUT_SECONDS: '600',
    });
    try {
      const stalled = await connect(child.url);
      stalled.socket.write(STALLED_POST);
      // The request is under way once the server has its headers; a normal request on another
      // connection proves the server is past accepting the stalled one.
      assert.equal((await fetch(`${child.url}/healthz`)).status, 200);
      child.process.kill('SIGTERM');
      const exit = await within(child.exited, 30_000, 'the server to exit');
      assert.equal(exit.code, 0, child.output.join('\n'));
      assert.ok(child.output.some((l) => l.includes('"msg":"closed"')), 'logged that it closed, after closing storage');
      stalled.socket.destroy();
    } finally {
      child.process.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});
