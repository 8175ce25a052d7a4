/**
 * Unknown routes, wrong methods, and a failure inside a handler: each a problem document;
 * a 5xx reveals nothing internal and is logged once with its request id.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { buildApp, type PostboxApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import type { Problem } from '../../src/protocol/types.js';
import { Hub } from '../../src/realtime/hub.js';
import { openSqliteStorage } from '../../src/storage/sqlite/sqlite-storage.js';
import type { Storage } from '../../src/storage/storage.js';
import { request } from '../helpers/http.js';
import { startTestServer, tempDir } from '../helpers/server.js';
import { openStream } from '../helpers/sse.js';

describe('routing and failure answers', () => {
  let app: PostboxApp;
  let storage: Storage;
  let url: string;
  let dir: string;
  const logs: Record<string, unknown>[] = [];

  before(async () => {
    dir = await tempDir();
    const config = loadConfig({ env: { DATABASE_URL: `sqlite:${dir}/db.sqlite` } });
    storage = openSqliteStorage({ path: `${dir}/db.sqlite`, durability: 'fsync' });
    const logger = pino({ level: 'info' }, new Writable({
      write(chunk: Buffer, _e, done) {
        for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    }));
    app = await buildApp({ config, storage, hub: new Hub(logger), logger });
    // A route that fails the way a bug would, with internals in its message.
    app.get('/test/boom', { config: { access: 'public' } }, () => {
      throw new Error('secret: connection string postgres://admin:hunter2@db/prod');
    });
    url = await app.listen({ port: 0, host: '127.0.0.1' });
  });
  after(async () => {
    await app.close();
    await storage.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers 404 problem+json for an unknown route', async () => {
    const res = await request(url, '/no/such/thing');
    assert.equal(res.status, 404);
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    const p = res.json<Problem>();
    assert.equal(p.type, '/problems/not_found');
    assert.match(p.detail, /\/no\/such\/thing/);
  });

  it('answers 405 with Allow for a known path and a wrong method', async () => {
    const cases: [string, string, string][] = [
      ['GET', '/post-message', 'POST'],
      ['DELETE', '/get-messages/Val', 'GET, HEAD'],
      ['PUT', '/v1/messages', 'POST'],
      ['POST', '/v1/messages/1', 'DELETE, GET, HEAD'],
    ];
    for (const [method, path, allow] of cases) {
      const res = await request(url, path, { method });
      assert.equal(res.status, 405, `${method} ${path}`);
      assert.equal(res.headers.allow, allow, `${method} ${path}`);
      assert.equal(res.json<Problem>().type, '/problems/method_not_allowed');
    }
  });

  it('answers HEAD like GET, without a body', async () => {
    const res = await request(url, '/get-messages/Val', { method: 'HEAD' });
    assert.equal(res.status, 200);
    assert.equal(res.text, '');
  });

  it('hides the cause of a 500 and logs it once with the request id', async () => {
    const res = await request(url, '/test/boom', { headers: { 'x-request-id': 'trace-123' } });
    assert.equal(res.status, 500);
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    assert.doesNotMatch(res.text, /secret|hunter2|postgres|Error|at /);
    const p = res.json<Problem & { requestId: string }>();
    assert.equal(p.type, '/problems/internal');
    assert.equal(p.requestId, 'trace-123');
    const logged = logs.filter((l) => l.reqId === 'trace-123' && (l.level as number) >= 50);
    assert.equal(logged.length, 1, JSON.stringify(logs));
    assert.match(JSON.stringify(logged[0]), /hunter2/, 'the log keeps the cause for the operator');
  });

  it('describes each problem type at its URI', async () => {
    const res = await request(url, '/problems/validation');
    assert.equal(res.status, 200);
    assert.match(res.text, /Invalid request \(HTTP 400\)/);
    assert.equal((await request(url, '/problems/nonsense')).status, 404);
  });
});

describe('every 5xx names the request id its cause was logged under', () => {
  it('on a storage outage (503 storage_unavailable) and a full server (503 server_busy)', async () => {
    const server = await startTestServer({ POSTBOX_STREAMS_MAX: '1' });
    const held = await openStream(server.url, '/v1/users/holder/stream');
    try {
      const busy = await request(server.url, '/v1/users/other/stream', { headers: { 'x-request-id': 'busy-1' } });
      assert.equal(busy.status, 503);
      assert.equal(busy.json<Problem>().type, '/problems/server_busy');
      assert.equal(busy.json<Problem>().requestId, 'busy-1');

      await server.storage.close();
      const away = await request(server.url, '/v1/messages', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': 'away-1' },
        body: JSON.stringify({ fromUser: 'a', toUser: 'b', message: 'm' }),
      });
      assert.equal(away.status, 503);
      const p = away.json<Problem>();
      assert.equal(p.type, '/problems/storage_unavailable');
      assert.equal(p.requestId, 'away-1', 'the operator can find the cause by the id the client holds');
      assert.equal(server.logs.filter((l) => l.reqId === 'away-1' && (l.level as number) >= 40).length, 1, 'logged once');
    } finally {
      held.close();
      await server.stop();
    }
  });
});
